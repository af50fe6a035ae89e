"""Bad input of every kind gets the right 4xx in the one error shape; bugs get a clean 500."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from api_helpers import assert_error
from fastapi import APIRouter, FastAPI

from core.errors import Conflict, InvalidFlow, RateLimited


class ProbeExplosion(RuntimeError):
    pass


@pytest.fixture(scope="module")
def extra_routes() -> Callable[[FastAPI], None]:
    def add(app: FastAPI) -> None:
        probe = APIRouter(prefix="/api/probe")

        @probe.get("/boom")
        async def probe_boom() -> str:
            raise ProbeExplosion("secret internals: db password is hunter2")

        @probe.get("/invalid-flow")
        async def probe_invalid_flow() -> str:
            raise InvalidFlow("node 'menu' has no exit for digit 1")

        @probe.get("/conflict")
        async def probe_conflict() -> str:
            raise Conflict("already published")

        @probe.get("/slow-down")
        async def probe_rate_limited() -> str:
            raise RateLimited(retry_after_s=7)

        app.include_router(probe)

    return add


async def test_malformed_json_is_400_with_a_clear_message(client: httpx.AsyncClient, auth) -> None:
    for path, headers in (("/api/users", auth("admin")), ("/api/auth/login", {})):
        response = await client.post(
            path,
            content=b'{"username": "x", "password": ',
            headers={**headers, "Content-Type": "application/json"},
        )
        body = assert_error(response, 400, "malformed_json")
        assert "not valid JSON" in body["detail"] and "position" in body["detail"]


async def test_missing_fields_are_named(client: httpx.AsyncClient, auth) -> None:
    body = assert_error(
        await client.post("/api/auth/login", json={"username": "admin"}), 422, "invalid_input"
    )
    assert body["detail"] == "body.password: Field required"
    body = assert_error(
        await client.post("/api/users", json={"username": "someone"}, headers=auth("admin")), 422
    )
    assert "body.password: Field required" in body["detail"]
    assert "body.role: Field required" in body["detail"]
    body = assert_error(await client.post("/api/auth/refresh", json={}), 422)
    assert "body.refreshToken: Field required" in body["detail"]
    # No body at all.
    body = assert_error(
        await client.post("/api/auth/refresh", headers={"Content-Type": "application/json"}),
        422,
    )
    assert "body" in body["detail"]


async def test_wrong_json_shape_and_over_long_fields(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.post("/api/auth/login", json=["admin", "admin123"]), 422)
    assert body["detail"].startswith("body")
    body = assert_error(
        await client.post("/api/auth/login", json={"username": "a" * 65, "password": "x"}), 422
    )
    assert "body.username" in body["detail"] and "64" in body["detail"]
    body = assert_error(
        await client.post("/api/auth/login", json={"username": "admin", "password": "p" * 5000}),
        422,
    )
    assert "body.password" in body["detail"]
    body = assert_error(
        await client.post("/api/auth/refresh", json={"refreshToken": "r" * 600}), 422
    )
    assert "body.refreshToken" in body["detail"]
    body = assert_error(
        await client.post("/api/auth/login", json={"username": 12, "password": None}), 422
    )
    assert "body.username" in body["detail"] and "body.password" in body["detail"]


async def test_unsupported_media_type_and_huge_bodies(client: httpx.AsyncClient) -> None:
    assert_error(
        await client.post(
            "/api/auth/login", content=b"admin:admin123", headers={"Content-Type": "text/plain"}
        ),
        415,
        "unsupported_media_type",
    )
    huge = json.dumps({"username": "admin", "password": "x" * (2 * 1024 * 1024)})
    response = await client.post(
        "/api/auth/login", content=huge, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/nothing-here"), 404, "not_found")
    wrong = await client.delete("/api/auth/login")
    assert_error(wrong, 405, "method_not_allowed")
    assert "POST" in wrong.headers["allow"]


async def test_app_errors_map_to_status_and_code(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/api/probe/invalid-flow"), 422, "invalid_flow")
    assert body["detail"] == "node 'menu' has no exit for digit 1"
    assert_error(await client.get("/api/probe/conflict"), 409, "conflict")
    limited = await client.get("/api/probe/slow-down")
    assert_error(limited, 429, "rate_limited")
    assert limited.headers["retry-after"] == "7"


async def test_unhandled_exception_is_a_clean_500_logged_with_traceback(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await client.get("/api/probe/boom", headers={"X-Request-ID": "boom-request-1"})
    body = assert_error(response, 500, "internal_error")
    assert "boom-request-1" in body["detail"]
    assert response.headers["x-request-id"] == "boom-request-1"
    assert "hunter2" not in response.text and "Traceback" not in response.text

    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    [error] = [e for e in lines if e.get("event") == "unhandled_error"]
    assert error["request_id"] == "boom-request-1" and error["level"] == "error"
    assert "ProbeExplosion" in error["exception"] and "Traceback" in error["exception"]
    [access] = [e for e in lines if e.get("event") == "http_request"]
    assert access["status"] == 500 and access["path"] == "/api/probe/boom"

    # The server is still fine afterwards.
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_request_id_is_echoed_or_generated(
    client: httpx.AsyncClient, auth, capsys: pytest.CaptureFixture[str]
) -> None:
    echoed = await client.get("/api/auth/me", headers={**auth("agent"), "X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/api/auth/me", headers=auth("agent"))
    assert len(generated.headers["x-request-id"]) == 32
    # Junk (log injection, absurd length) is replaced, not echoed.
    junk = await client.get("/api/auth/me", headers={"X-Request-ID": "a b\tc" + "x" * 100})
    assert junk.headers["x-request-id"] != "a b\tc" + "x" * 100
    assert len(junk.headers["x-request-id"]) == 32

    capsys.readouterr()
    response = await client.get("/api/users/1", headers={**auth("admin"), "X-Request-ID": "tpl-1"})
    assert response.status_code == 200
    events = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    [access] = [e for e in events if e.get("event") == "http_request"]
    assert access["request_id"] == "tpl-1"
    assert access["path"] == "/api/users/{user_id}"  # the template, not the raw path
    assert access["method"] == "GET" and access["status"] == 200
    assert isinstance(access["duration_ms"], float) and access["user_id"] is not None
    assert "timestamp" in access and access["level"] == "info"


def test_every_openapi_operation_has_its_own_id() -> None:
    """Generated clients name methods by operation id; FastAPI only warns on duplicates."""
    import warnings

    from api.main import create_app
    from core.config import Env, Settings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a duplicate id is a UserWarning: fail on it
        spec = create_app(Settings(env=Env.test)).openapi()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) and len(ids) > 40
