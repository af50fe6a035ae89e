"""A queue callback through the real routing engine: scheduled with a queueId over the API, it
waits in its queue as a callback entry (Redis), the routing engine reserves a free agent for it
and hands it off on `callbacks:ready`, the worker's dispatcher wakes its workflow, which holds
the agent, dials agent-first through the fake Exotel and releases the agent when the status
callback comes back through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from api_helpers import login, serve
from cb_support import eventually, load
from fake_exotel import FakeExotel
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from activities.callback_queue import CallbackQueueActivities, run_callback_dispatcher
from activities.callbacks import CallbackActivities
from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from api.main import create_app
from core.config import Settings
from core.db.models import Agent, CallQueueEntry, Queue
from core.temporal import with_data_converter
from workflows import WORKFLOWS, workflow_runner

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module")
async def api_url(cb_settings: Settings, seeded: None) -> AsyncIterator[str]:
    async with serve(create_app(cb_settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            for _ in range(200):
                health = (await probe.get("/health")).json()
                if health["components"]["temporal"]["status"] == "up":
                    break
                await asyncio.sleep(0.05)
        yield url


@pytest_asyncio.fixture(scope="module")
async def stack(
    temporal_client: Client, cb_settings: Settings, api_url: str, sessionmaker
) -> AsyncIterator[Settings]:
    """A worker with every real activity, and its callback dispatcher, as worker.py runs them."""
    settings = cb_settings.model_copy(update={"public_url": api_url})
    client = with_data_converter(temporal_client)
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=5) as http, Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=[
            *CallActivities(sessionmaker).all(),
            *CarrierActivities(settings, http).all(),
            *CallbackActivities(settings, sessionmaker, http).all(),
            *CallbackQueueActivities(settings, sessionmaker).all(),
        ],
        workflow_runner=workflow_runner(),
    ):
        dispatcher = asyncio.create_task(
            run_callback_dispatcher(settings, client, stop, sessionmaker=sessionmaker)
        )
        yield settings
        stop.set()
        await dispatcher


async def test_queue_callback_waits_for_a_free_agent_then_dials_agent_first(
    stack, api_url, fake_exotel: tuple[FakeExotel, str], sessionmaker
):
    fake = fake_exotel[0]
    fake.call_duration_s = 0.2
    async with sessionmaker() as session:
        queue = await session.scalar(select(Queue).where(Queue.name == "General"))
        agents = (await session.scalars(select(Agent).where(Agent.deleted_at.is_(None)))).all()
    assert queue is not None and agents
    phones = {a.phone_number: a.id for a in agents}
    async with httpx.AsyncClient(base_url=api_url, timeout=20) as http:
        headers = (await login(http, "manager", "manager123")).headers
        created = await http.post("/api/callbacks", headers=headers, json={
            "phoneNumber": "+919812377777", "asap": True, "queueId": queue.id,
            "note": "wants a human"})
        assert created.status_code == 201, created.text
        callback_id = created.json()["id"]

        async def in_queue():
            async with sessionmaker() as session:
                return await session.scalar(select(CallQueueEntry).where(
                    CallQueueEntry.call_sid == f"callback-{callback_id}"))

        entry = await eventually(in_queue)  # waiting as a callback entry of its queue
        assert entry.status == "callback_requested" and entry.queue_id == queue.id
        await asyncio.sleep(0.5)
        assert fake.placed_for(f"cb:{callback_id}:") == []  # nobody free: no dial
        assert (await load(sessionmaker, callback_id)).status == "waiting_in_queue"
        for agent_id in phones.values():  # agents come on shift
            response = await http.put(f"/api/agents/{agent_id}/status", headers=headers,
                                      json={"status": "available"})
            assert response.status_code == 200, response.text

        async def finished():
            row = await load(sessionmaker, callback_id)
            return row if row.status in ("completed", "failed", "exhausted") else None

        row = await eventually(finished, timeout_s=60)
        assert row.status == "completed", row.last_error
        [placed] = fake.placed_for(f"cb:{callback_id}:")
        assert placed["To"] == "+919812377777" and placed["From"] in phones
        assert row.agent_id == phones[placed["From"]]

        async def released():
            agent = (await http.get(f"/api/agents/{row.agent_id}", headers=headers)).json()
            return agent if agent["status"] in ("wrap_up", "available") else None

        agent = await eventually(released)  # the dial is over: wrap-up after a conversation
        assert agent["activeCalls"] == 0 and agent["callsHandledToday"] >= 1, agent
