"""The API node's activity against a real local HTTP server, and the SSRF guard."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.logic import LogicActivities
from core.config import Env, Settings
from core.flows.api_call import MISSING, ApiCallResult, build_request, json_path, template_host
from core.flows.inputs import reveal
from core.flows.schema import ApiConfig
from core.http_guard import (
    Allowlist,
    ForbiddenHost,
    address_problem,
    resolve_checked,
    static_host_problem,
)


def settings(**kw: Any) -> Settings:
    base = {"env": Env.test, "api_node_allowlist": "127.0.0.1"}
    return Settings(**{**base, **kw})


async def call(url: str, *, cfg: dict[str, Any] | None = None,
               variables: dict[str, Any] | None = None, **settings_kw: Any) -> ApiCallResult:
    config = ApiConfig.model_validate({"url": url, **(cfg or {})})
    request = build_request(config, variables or {}, call_sid="CA1", node_id="api",
                            timeout_s=config.timeout)
    async with httpx.AsyncClient() as http:
        return await LogicActivities(settings(**settings_kw), None, http).call_api(request)


async def test_success_maps_json_paths_and_keeps_status(orders) -> None:
    server, url = orders
    result = await call(url + "/orders/{{ order }}", variables={"order": "123456"}, cfg={
        "responseMappings": {"status": "order_status", "customer.tier": "tier",
                             "$.items[1].sku": "second_sku", "nope.missing": "absent"},
    })
    assert result.outcome == "success" and result.status == 200
    assert result.variables == {"order_status": "shipped", "tier": "gold", "second_sku": "B2"}
    assert server.last["path"] == "/orders/123456"


async def test_http_500_is_an_error_with_the_status(orders) -> None:
    _, url = orders
    result = await call(url + "/fail")
    assert (result.outcome, result.status) == ("error", 500)


async def test_404_is_an_error(orders) -> None:
    _, url = orders
    result = await call(url + "/orders/999999")
    assert (result.outcome, result.status) == ("error", 404)


async def test_slow_server_times_out_within_the_node_timeout(orders) -> None:
    _, url = orders
    started = asyncio.get_running_loop().time()
    result = await call(url + "/slow", cfg={"timeout": 0.5})
    elapsed = asyncio.get_running_loop().time() - started
    assert result.outcome == "timeout"
    assert elapsed < 1.5


async def test_slow_answer_inside_the_timeout_succeeds(orders) -> None:
    _, url = orders
    result = await call(url + "/slowish", cfg={"timeout": 2, "responseMappings": {"status": "s"}})
    assert result.outcome == "success" and result.variables == {"s": "shipped"}
    assert result.elapsed_ms >= 400


async def test_timeout_is_capped_by_the_webhook_budget(orders) -> None:
    _, url = orders
    started = asyncio.get_running_loop().time()
    # The node asks for 10 s; a 1 s webhook budget leaves 0.7 s for the request.
    result = await call(url + "/slow", cfg={"timeout": 10}, webhook_budget_ms=1000)
    assert result.outcome == "timeout"
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_huge_body_is_refused_past_the_cap(orders) -> None:
    _, url = orders
    streamed = await call(url + "/huge", api_node_max_response_bytes=64 * 1024)
    assert streamed.outcome == "error" and "larger than" in streamed.error
    declared = await call(url + "/huge-declared", api_node_max_response_bytes=64 * 1024)
    assert declared.outcome == "error" and "larger than" in declared.error


async def test_redirect_to_a_private_address_is_refused(orders) -> None:
    _, url = orders
    result = await call(url + "/redirect-private")
    assert result.outcome == "error"
    assert "169.254.169.254" in result.error and "link-local" in result.error
    local = await call(url + "/redirect-local")
    assert local.outcome == "error" and "localhost" in local.error


async def test_redirect_on_an_allowed_host_is_followed_and_loops_are_cut(orders) -> None:
    _, url = orders
    ok = await call(url + "/redirect-ok", cfg={"responseMappings": {"status": "s"}})
    assert ok.outcome == "success" and ok.variables == {"s": "shipped"}
    loop = await call(url + "/redirect-loop")
    assert loop.outcome == "error" and "redirects" in loop.error


async def test_loopback_refused_without_the_allowlist(orders) -> None:
    server, url = orders
    before = server.hits.get("orders", 0)
    result = await call(url + "/orders/123456", api_node_allowlist="")
    assert result.outcome == "error" and "loopback" in result.error
    assert server.hits.get("orders", 0) == before  # never sent


async def test_retries_only_idempotent_methods(orders) -> None:
    server, url = orders
    server.hits["flaky"] = 0
    got = await call(url + "/flaky", cfg={"method": "GET"})
    assert got.outcome == "success" and got.attempts == 2
    server.hits["flaky"] = 0
    posted = await call(url + "/flaky", cfg={"method": "POST", "body": {"a": 1}})
    assert (posted.outcome, posted.status, posted.attempts) == ("error", 503, 1)
    with pytest.raises(ValueError, match="not idempotent"):
        ApiConfig.model_validate({"url": url + "/flaky", "method": "POST", "maxRetries": 2})


async def test_templated_body_headers_and_secret_headers(orders) -> None:
    server, url = orders
    result = await call(
        url + "/echo",
        cfg={"method": "POST", "headers": {"X-Caller": "{{ caller }}"},
             "secretHeaders": {"Authorization": "CRM_TOKEN"},
             "body": {"order": "{{ order }}", "amount": "{{ amount }}", "note": "hi {{ order }}"},
             "saveToVariable": "echo"},
        variables={"caller": "+919876543210", "order": "123456", "amount": 99.5},
        api_secrets={"CRM_TOKEN": SecretStr("Bearer abc")},
    )
    assert result.outcome == "success"
    assert server.last["headers"]["authorization"] == "Bearer abc"
    assert server.last["headers"]["x-caller"] == "+919876543210"
    assert server.last["body"] == '{"order":"123456","amount":99.5,"note":"hi 123456"}'
    assert result.body["method"] == "POST"


async def test_missing_secret_is_an_error_not_an_empty_header(orders) -> None:
    _, url = orders
    result = await call(url + "/echo", cfg={"secretHeaders": {"Authorization": "NOPE"}})
    assert result.outcome == "error" and "NOPE is not configured" in result.error


async def test_non_json_with_mappings_is_an_error_without_is_a_success(orders) -> None:
    _, url = orders
    assert (await call(url + "/text", cfg={"responseMappings": {"a": "b"}})).outcome == "error"
    assert (await call(url + "/text")).outcome == "success"


async def test_a_variable_cannot_move_the_request_to_another_host(orders) -> None:
    _, url = orders
    result = await call(url + "{{ path }}", variables={"path": "@169.254.169.254/x"})
    assert result.outcome == "error"


async def test_connection_refused_is_an_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = await call(f"http://127.0.0.1:{port}/x")
    assert result.outcome == "error" and "request failed" in result.error


# --- the guard on its own ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
        ("172.16.0.1", "private"), ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
        ("100.100.100.200", "not a public address"), ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"), ("fd00:ec2::254", "private"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_forbidden_addresses(address: str, fragment: str) -> None:
    assert fragment in address_problem(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "13.126.0.1"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_static_checks_names_and_allowlist() -> None:
    none = Allowlist.parse([])
    assert "local or metadata" in static_host_problem("metadata.google.internal", none)
    assert "local or metadata" in static_host_problem("app.localhost", none)
    assert static_host_problem("crm.example.in", none) is None
    allow = Allowlist.parse(["crm.internal", "*.corp.example", "10.0.0.0/8"])
    assert static_host_problem("crm.internal", allow) is None
    assert static_host_problem("a.b.corp.example", allow) is None
    assert static_host_problem("10.9.9.9", allow) is None
    assert static_host_problem("11.0.0.1", allow) is None
    assert "private" in static_host_problem("192.168.0.1", allow)


async def test_every_resolved_address_is_checked(monkeypatch) -> None:
    loop = asyncio.get_running_loop()
    answers = {
        "mixed.example": ["93.184.216.34", "10.0.0.5"],  # what a rebinding attack looks like
        "public.example": ["93.184.216.34"],
        "internal.example": ["10.0.0.5"],
    }

    async def fake_getaddrinfo(host, port, **_kw):
        if host not in answers:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    none = Allowlist.parse([])
    with pytest.raises(ForbiddenHost, match=r"10\.0\.0\.5 is a private"):
        await resolve_checked("mixed.example", 443, none)
    assert [str(a) for a in await resolve_checked("public.example", 443, none)] == [
        "93.184.216.34"
    ]
    with pytest.raises(ForbiddenHost, match="does not resolve"):
        await resolve_checked("nowhere.example", 443, none)
    allowed = await resolve_checked("internal.example", 80, Allowlist.parse(["internal.example"]))
    assert [str(a) for a in allowed] == ["10.0.0.5"]


async def test_the_checked_address_is_the_one_connected_to(monkeypatch, orders) -> None:
    """The name resolves once; the request goes to that address with the real Host header."""
    _, url = orders
    port = httpx.URL(url).port
    loop = asyncio.get_running_loop()
    lookups: list[str] = []

    async def fake_getaddrinfo(host, p, **_kw):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p))]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    result = await call(f"http://crm.test:{port}/echo", cfg={"saveToVariable": "r"},
                        api_node_allowlist="crm.test")
    assert result.outcome == "success"
    assert result.body["host"] == f"crm.test:{port}"
    assert lookups == ["crm.test"]


def test_json_path_and_template_host() -> None:
    doc = {"a": {"b": [1, {"c": "x"}]}, "$weird": 1}
    assert json_path(doc, "a.b[1].c") == "x"
    assert json_path(doc, "$.a.b[-1].c") == "x"
    assert json_path(doc, "a.b[5]") is MISSING and json_path(doc, "a.z") is MISSING
    assert template_host("https://crm.example.in/c/{{ caller }}") == "crm.example.in"
    assert template_host("https://{{ host }}/x") is None
    assert template_host("http://user@crm.in:8080/x") == "crm.in"


async def test_httpx_logs_of_api_node_requests_hide_path_and_query(orders, caplog) -> None:
    _, url = orders
    caplog.set_level("INFO", logger="httpx")
    result = await call(url + "/orders/{{ acct }}?pin={{ acct }}", variables={"acct": "123456"})
    assert result.status == 200
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "httpx")
    assert "HTTP Request: GET" in logged and "123456" not in logged


async def test_secrets_do_not_follow_a_redirect_to_another_origin(orders) -> None:
    server, url = orders
    other = url.replace("127.0.0.1", "[::ffff:127.0.0.1]")  # same server, another origin
    same = await call(url + "/redirect-to?target=/echo",
                      cfg={"secretHeaders": {"Authorization": "CRM"}},
                      api_secrets={"CRM": SecretStr("Bearer abc")})
    assert same.outcome == "success"
    assert server.last["headers"].get("authorization") == "Bearer abc"
    moved = await call(url + "/redirect-to?target=" + other + "/echo",
                       cfg={"secretHeaders": {"Authorization": "CRM"},
                            "headers": {"X-Trace": "1"}},
                       api_secrets={"CRM": SecretStr("Bearer abc")},
                       api_node_allowlist="127.0.0.1,::ffff:127.0.0.1")
    assert moved.outcome == "success", moved.error
    assert "authorization" not in server.last["headers"]
    assert server.last["headers"]["x-trace"] == "1"


async def test_sealed_values_are_filled_from_the_call_vault(orders, redis_url) -> None:
    """A sensitive input the API sealed reaches the request (path and body) only inside the
    activity; one the vault no longer holds makes the request an error, never a request
    with the placeholder in it."""
    from core.flows import vault
    from core.flows.inputs import Sensitive
    from core.redis import make_redis

    server, url = orders
    ref = vault.sealed_ref("CA1", "u7")
    card = Sensitive.sealed(ref, "************1111")
    config = ApiConfig.model_validate({"url": url + "/echo", "method": "POST",
                                       "body": {"card": "{{ card }}", "note": "x {{ card }}"}})
    request = build_request(config, reveal({"card": card}), call_sid="CA1", node_id="api",
                            timeout_s=config.timeout)
    assert "1111111111111111" not in request.model_dump_json()
    redis = make_redis(redis_url)
    try:
        async with httpx.AsyncClient() as http:
            activities = LogicActivities(settings(), None, http, redis)
            expired = await activities.call_api(request)
            assert expired.outcome == "error" and "expired" in (expired.error or "")
            await vault.seal(redis, "CA1", ref, "4111111111111111")
            result = await activities.call_api(request)
    finally:
        await redis.aclose()
    assert result.outcome == "success", result.error
    assert server.last["body"] == '{"card":"4111111111111111","note":"x 4111111111111111"}'
