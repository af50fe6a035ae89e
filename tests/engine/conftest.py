"""A real worker on a unique task queue, with the real activities against the test database
and a fake Exotel REST API on a local HTTP server."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.worker import Worker

from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.temporal import with_data_converter
from workflows import WORKFLOWS, workflow_runner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fakes"))
from api_helpers import serve
from fake_exotel import FakeExotel


@pytest_asyncio.fixture(scope="module")
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module")
async def fake_exotel() -> AsyncIterator[tuple[FakeExotel, str]]:
    fake = FakeExotel()
    async with serve(fake.app()) as url:
        yield fake, url


@pytest_asyncio.fixture(scope="module")
async def call_worker(
    temporal_client: Client, sessionmaker, settings: Settings, fake_exotel
) -> AsyncIterator[tuple[Client, str]]:
    task_queue = f"calls-{uuid.uuid4().hex[:8]}"
    client = with_data_converter(temporal_client)
    fake, url = fake_exotel
    exotel_settings = settings.model_copy(
        update={
            "exotel_sid": fake.sid,
            "exotel_api_key": SecretStr(fake.api_key),
            "exotel_api_token": SecretStr(fake.api_token),
            "exotel_api_base": url,
        }
    )
    async with httpx.AsyncClient(timeout=5) as http, Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            *CallActivities(sessionmaker).all(),
            *CarrierActivities(exotel_settings, http).all(),
        ],
        workflow_runner=workflow_runner(),
    ):
        yield client, task_queue
