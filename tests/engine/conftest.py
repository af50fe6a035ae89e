"""A real worker on a unique task queue, with the real activities against the test database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from activities.calls import CallActivities
from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.temporal import with_data_converter
from workflows import WORKFLOWS, workflow_runner


@pytest_asyncio.fixture(scope="module")
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module")
async def call_worker(
    temporal_client: Client, sessionmaker
) -> AsyncIterator[tuple[Client, str]]:
    task_queue = f"calls-{uuid.uuid4().hex[:8]}"
    client = with_data_converter(temporal_client)
    activities = CallActivities(sessionmaker)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        workflow_runner=workflow_runner(),
    ):
        yield client, task_queue
