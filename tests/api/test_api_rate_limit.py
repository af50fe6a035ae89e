"""Login throttling per (username, client IP) in Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from api_helpers import assert_error, serve
from fastapi import FastAPI

from api.main import create_app
from core.config import Settings

WRONG = {"password": "definitely-wrong"}


def _client(base_url: str, source_ip: str) -> httpx.AsyncClient:
    # Every 127.0.0.0/8 address is loopback on Linux: a second "client IP" for free.
    transport = httpx.AsyncHTTPTransport(local_address=source_ip)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30)


async def test_429_after_max_failures_per_username_and_ip(
    base_url: str, api_settings: Settings
) -> None:
    assert api_settings.login_max_failures == 10
    async with _client(base_url, "127.0.0.1") as one, _client(base_url, "127.0.0.2") as two:
        for _ in range(10):
            assert_error(
                await one.post("/api/auth/login", json={"username": "manager", **WRONG}), 401
            )
        # The 11th attempt is refused even with the right password...
        blocked = await one.post(
            "/api/auth/login", json={"username": "manager", "password": "manager123"}
        )
        body = assert_error(blocked, 429, "rate_limited")
        retry_after = int(blocked.headers["retry-after"])
        assert 0 < retry_after <= api_settings.login_failure_window_s
        assert str(retry_after) in body["detail"]
        # ...and the username is matched case-insensitively.
        assert_error(await one.post("/api/auth/login", json={"username": "MANAGER", **WRONG}), 429)

        # Another IP is not blocked for the same user, and its success does not reset the
        # count of the first IP.
        ok = await two.post(
            "/api/auth/login", json={"username": "manager", "password": "manager123"}
        )
        assert ok.status_code == 200, ok.text
        assert_error(
            await one.post(
                "/api/auth/login", json={"username": "manager", "password": "manager123"}
            ),
            429,
        )
        # Another username from the blocked IP is not blocked either.
        other = await one.post(
            "/api/auth/login", json={"username": "agent", "password": "agent123"}
        )
        assert other.status_code == 200


async def test_the_oauth2_form_is_throttled_too(base_url: str) -> None:
    async with _client(base_url, "127.0.0.3") as c:
        for _ in range(10):
            await c.post("/api/auth/login", data={"username": "agent", **WRONG})
        assert_error(await c.post("/api/auth/login", data={"username": "agent", **WRONG}), 429)


@pytest.fixture(scope="module")
async def short_window_url(api_settings: Settings, seeded: None):
    """A second app with a 2-failure, 2-second window, to see the block lift."""
    quick = api_settings.model_copy(update={"login_max_failures": 2, "login_failure_window_s": 2})
    app: FastAPI = create_app(quick)
    async with serve(app) as url:
        yield url


async def test_block_lifts_when_the_window_passes(short_window_url: str) -> None:
    async with _client(short_window_url, "127.0.0.4") as c:
        for _ in range(2):
            assert_error(await c.post("/api/auth/login", json={"username": "agent", **WRONG}), 401)
        blocked = await c.post(
            "/api/auth/login", json={"username": "agent", "password": "agent123"}
        )
        assert_error(blocked, 429)
        assert int(blocked.headers["retry-after"]) <= 2
        await asyncio.sleep(2.2)
        ok = await c.post("/api/auth/login", json={"username": "agent", "password": "agent123"})
        assert ok.status_code == 200, ok.text


async def test_success_clears_the_pairs_own_failures(short_window_url: str) -> None:
    async with _client(short_window_url, "127.0.0.5") as c:
        assert_error(await c.post("/api/auth/login", json={"username": "manager", **WRONG}), 401)
        ok = await c.post("/api/auth/login", json={"username": "manager", "password": "manager123"})
        assert ok.status_code == 200
        # One more failure would have made two (blocked) without the reset.
        assert_error(await c.post("/api/auth/login", json={"username": "manager", **WRONG}), 401)
        ok = await c.post("/api/auth/login", json={"username": "manager", "password": "manager123"})
        assert ok.status_code == 200
