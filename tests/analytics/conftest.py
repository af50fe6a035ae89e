"""Fixtures of the analytics tests: a seeded database, the API under uvicorn, a login helper."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
import pytest_asyncio
from an_support import OPEN_CLOCK, PASSWORDS, login, serve
from temporalio.client import Client

from api.main import create_app
from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.seed import run_seed
from core.temporal import with_data_converter


@pytest.fixture(scope="module")
def an_settings(settings: Settings) -> Settings:
    # The workers' business-hours clock: the API walks first turns with it too.
    return settings.model_copy(
        update={"temporal_task_queue": f"an-{uuid.uuid4().hex[:8]}", "call_grace_s": 1.5,
                "business_hours_clock": datetime.fromisoformat(OPEN_CLOCK)}
    )


@pytest_asyncio.fixture(scope="module")
async def seeded_db(an_settings: Settings) -> None:
    await run_seed(an_settings)


@pytest_asyncio.fixture(scope="module")
async def sessionmaker(an_settings: Settings):
    engine = make_engine(an_settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
def client_dc(temporal_client: Client) -> Client:
    return with_data_converter(temporal_client)


@pytest_asyncio.fixture(scope="module")
async def app(an_settings: Settings, seeded_db: None):
    app = create_app(an_settings)
    app.state.live_events.interval_s = 0.3  # dashboard:metrics quickly in tests
    return app


@pytest_asyncio.fixture(scope="module")
async def api_url(app) -> AsyncIterator[str]:
    async with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            for _ in range(200):
                health = (await probe.get("/health")).json()
                if health["components"]["temporal"]["status"] == "up":
                    break
                await asyncio.sleep(0.05)
        await asyncio.wait_for(app.state.live_events.subscribed.wait(), 10)
        yield url


@pytest_asyncio.fixture(scope="module")
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def tokens(http: httpx.AsyncClient) -> dict[str, str]:
    """Access tokens by role of the seeded demo users (admin is super_admin)."""
    return {
        role: (await login(http, role, password)).access_token
        for role, password in PASSWORDS.items()
    }


