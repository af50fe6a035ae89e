"""Logic-node tests: a local order server for the API node, a worker with every activity."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import serve
from orders_server import OrdersServer

from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from activities.logic import LogicActivities
from core.config import Env, Settings
from core.db.session import make_engine, make_sessionmaker
from core.temporal import with_data_converter
from workflows import WORKFLOWS, workflow_runner


@pytest_asyncio.fixture(scope="module")
async def orders() -> AsyncIterator[tuple[OrdersServer, str]]:
    server = OrdersServer()
    async with serve(server.app()) as url:
        yield server, url


@pytest_asyncio.fixture(scope="module")
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module")
async def logic_worker(
    temporal_client: Client, sessionmaker, settings: Settings
) -> AsyncIterator[tuple[Client, str]]:
    """A real worker with the call, carrier and logic activities; the API node may call the
    local order server (127.0.0.1 allowlisted) and secrets CRM_TOKEN is configured."""
    task_queue = f"logic-{uuid.uuid4().hex[:8]}"
    client = with_data_converter(temporal_client)
    logic_settings = settings.model_copy(update={
        "api_node_allowlist": "127.0.0.1",
        "api_secrets": {"CRM_TOKEN": "Bearer s3cr3t-value"},
    })
    async with httpx.AsyncClient(timeout=5) as http, Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            *CallActivities(sessionmaker).all(),
            *CarrierActivities(Settings(env=Env.test), http).all(),
            *LogicActivities(logic_settings, sessionmaker, http).all(),
        ],
        workflow_runner=workflow_runner(),
    ):
        yield client, task_queue
