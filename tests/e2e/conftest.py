"""The whole call path for real: HTTP webhooks → API → Temporal → worker → PostgreSQL."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from e2e_support import OPEN_CLOCK
from temporalio.client import Client

from api.main import create_app
from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.seed import run_seed
from core.temporal import with_data_converter

# The API tests' helpers (uvicorn on a free port, login) serve these tests too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import login, serve


@pytest.fixture(scope="module")
def e2e_settings(settings: Settings) -> Settings:
    """A task queue of the module's own, a short grace so silent callers end quickly, and
    the workers' business-hours clock (the API walks first turns with it too)."""
    return settings.model_copy(
        update={
            "temporal_task_queue": f"e2e-{uuid.uuid4().hex[:8]}",
            "call_grace_s": 1.5,
            "business_hours_clock": datetime.fromisoformat(OPEN_CLOCK),
        }
    )


@pytest_asyncio.fixture(scope="module")
async def seeded_db(e2e_settings: Settings) -> None:
    await run_seed(e2e_settings)


@pytest_asyncio.fixture(scope="module")
async def sessionmaker(e2e_settings: Settings):
    engine = make_engine(e2e_settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
def client_dc(temporal_client: Client) -> Client:
    return with_data_converter(temporal_client)


@pytest_asyncio.fixture(scope="module")
async def api_url(e2e_settings: Settings, seeded_db: None) -> AsyncIterator[str]:
    async with serve(create_app(e2e_settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            # The app connects to Temporal in the background; wait until it has.
            for _ in range(200):
                health = (await probe.get("/health")).json()
                if health["components"]["temporal"]["status"] == "up":
                    break
                import asyncio

                await asyncio.sleep(0.05)
        yield url


@pytest_asyncio.fixture(scope="module")
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=15) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def admin_headers(http: httpx.AsyncClient) -> dict[str, str]:
    return (await login(http, "admin", "admin123")).headers


@pytest.fixture(scope="module")
def worker_env(e2e_settings: Settings) -> dict[str, str]:
    """Environment for a real `python worker.py` process serving this module's task queue."""
    return {
        **os.environ,
        "IVR_ENV": "test",
        "DATABASE_URL": e2e_settings.database_url,
        "REDIS_URL": e2e_settings.redis_url,
        "TEMPORAL_ADDRESS": e2e_settings.temporal_address,
        "TEMPORAL_TASK_QUEUE": e2e_settings.temporal_task_queue,
        # The seeded flow's business-hours check sees a Monday morning (open).
        "IVR_BUSINESS_HOURS_CLOCK": "2026-01-05T11:00:00+05:30",
    }
