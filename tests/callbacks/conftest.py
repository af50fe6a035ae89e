"""Callbacks for real: the fake Exotel REST API over HTTP, the real database and Redis, real
workers (on the Temporal dev server, or the time-skipping test server for long waits), and the
API app where a test needs the webhooks (status callbacks routed back to the workflow)."""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import text

from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.seed import run_seed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fakes"))
from api_helpers import serve
from cb_support import WEBHOOK_TOKEN
from fake_exotel import FakeExotel


@pytest_asyncio.fixture(scope="module")
async def fake_exotel() -> AsyncIterator[tuple[FakeExotel, str]]:
    fake = FakeExotel(call_duration_s=0.0)
    async with serve(fake.app()) as url:
        yield fake, url


@pytest.fixture(scope="module")
def cb_settings(settings: Settings, fake_exotel: tuple[FakeExotel, str]) -> Settings:
    """Exotel pointed at the fake; callbacks' waits short; a task queue of the module's own."""
    fake, url = fake_exotel
    return settings.model_copy(
        update={
            "exotel_sid": fake.sid,
            "exotel_api_key": SecretStr(fake.api_key),
            "exotel_api_token": SecretStr(fake.api_token),
            "exotel_api_base": url,
            "exotel_caller_id": "+918047112233",
            "exotel_app_id": "424242",
            "exotel_sms_sender": "ACMECO",
            "exotel_dlt_entity_id": "1101234567890",
            "exotel_dlt_template_id": "1107000000000001",
            "webhook_token": SecretStr(WEBHOOK_TOKEN),
            # Nothing listens here unless a module serves the API and says so.
            "public_url": "http://127.0.0.1:9",
            "temporal_task_queue": f"callbacks-{uuid.uuid4().hex[:8]}",
            "callback_ring_timeout_s": 5,
            "callback_time_limit_s": 60,
            "callback_status_grace_s": 2,
        }
    )


@pytest_asyncio.fixture(scope="module")
async def seeded(cb_settings: Settings) -> None:
    await run_seed(cb_settings)


@pytest_asyncio.fixture(scope="module")
async def sessionmaker(cb_settings: Settings):
    engine = make_engine(cb_settings.database_url, pool_size=4)
    # Workflow ids are `callback-{id}` and every module's fresh database counts from 1, while
    # the Temporal servers are shared by the whole session: start each module's ids elsewhere.
    async with engine.begin() as conn:
        start = random.randrange(10_000, 2**31, 10_000)
        await conn.execute(text(f"ALTER SEQUENCE voice_callbacks_id_seq RESTART WITH {start}"))
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module")
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
