"""Queue and transfer nodes in CallWorkflow: a real worker, real activities, PostgreSQL, Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
import redis.asyncio as aioredis
from sqlalchemy import delete, select, update
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.worker import Worker

from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from activities.routing import RoutingActivities
from core.calls import CallOutcome, CallStart
from core.config import Settings
from core.db.models import Agent, CallQueueEntry, FlowExecution, Queue, VoiceCallback
from core.db.session import make_engine, make_sessionmaker
from core.repositories import routing as repo
from core.routing.store import QueueRouting, RoutingStore
from core.telephony import CallEvent, Dialect, DialStatus, EventKind, Reply
from core.temporal import with_data_converter
from workflows import WORKFLOWS, workflow_runner

PHONES = {1: "+919800000001", 2: "+919800000002", 3: "+919800000003"}


def flow(queue_id: int, *, transfer: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "Routing test",
        "nodes": [
            {"id": "welcome", "type": "welcome", "config": {"message": "Hello."}},
            {"id": "q", "type": "queue", "config": {"queueId": queue_id}},
            {
                "id": "t",
                "type": "transfer",
                "config": transfer
                or {
                    "routingStrategy": "skills_based",
                    "skills": {"technical": 1},
                    "maxAttempts": 2,
                },
            },
            {"id": "bye", "type": "hangup", "config": {"message": "Bye.", "reason": "completed"}},
            {"id": "busy", "type": "hangup", "config": {"message": "Busy.", "reason": "busy"}},
            {"id": "late", "type": "hangup", "config": {"message": "Too long.", "reason": "late"}},
        ],
        "connections": [
            {"fromNode": "welcome", "toNode": "q", "port": "next"},
            {"fromNode": "q", "toNode": "t", "port": "next"},
            {"fromNode": "q", "toNode": "late", "port": "timeout"},
            {"fromNode": "t", "toNode": "bye", "port": "completed"},
            {"fromNode": "t", "toNode": "busy", "port": "noAnswer"},
        ],
    }


@pytest_asyncio.fixture(scope="module")
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module")
async def rclient(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(scope="module")
async def routing(sessionmaker, rclient) -> RoutingActivities:
    return RoutingActivities(sessionmaker, rclient)


@pytest_asyncio.fixture(scope="module")
async def worker(temporal_client: Client, sessionmaker, settings: Settings, routing):
    task_queue = f"routing-{uuid.uuid4().hex[:8]}"
    client = with_data_converter(temporal_client)
    async with (
        httpx.AsyncClient(timeout=5) as http,
        Worker(
            client,
            task_queue=task_queue,
            workflows=WORKFLOWS,
            activities=[
                *CallActivities(sessionmaker).all(),
                *CarrierActivities(settings, http).all(),
                *routing.all(),
            ],
            workflow_runner=workflow_runner(),
        ),
    ):
        yield client, task_queue


@pytest_asyncio.fixture
async def world(sessionmaker, rclient, routing) -> AsyncIterator[dict[str, Any]]:
    """Three agents (1 billing, 2 and 3 tech) and one queue, everything offline at first."""
    await rclient.flushdb()
    async with sessionmaker.begin() as session:
        await session.execute(delete(CallQueueEntry))
        await session.execute(delete(VoiceCallback))
        await session.execute(update(FlowExecution).values(agent_id=None, queue_id=None))
        await session.execute(delete(Agent))
        await session.execute(delete(Queue))
        for i, skills in ((1, {"billing": 3}), (2, {"technical": 4}), (3, {"technical": 2})):
            session.add(
                Agent(
                    id=i,
                    name=f"A{i}",
                    phone_number=PHONES[i],
                    skills=skills,
                    sequence=i,
                    wrap_up_s=5,
                )
            )
        queue = Queue(
            name="Tech",
            required_skills={"technical": 1},
            max_size=2,
            max_wait_s=600,
            callback_enabled=True,
            announce_interval_s=30,
        )
        session.add(queue)
        await session.flush()
        queue_id = queue.id
    routing._settings.clear()
    store: RoutingStore = routing.store
    await store.rebuild(force=True)
    yield {"store": store, "queue_id": queue_id}


class Call:
    def __init__(self, client: Client, task_queue: str, definition: dict[str, Any]) -> None:
        self.client, self.task_queue = client, task_queue
        self.sid = f"R{uuid.uuid4().hex[:16]}"
        self.start = CallStart(
            call_sid=self.sid,
            dialect=Dialect.xml,
            carrier="test",
            caller="+919876543210",
            called="+911234567890",
            definition=definition,
            grace_s=20.0,
        )
        self.handle = client.get_workflow_handle(f"call-{self.sid}", result_type=CallOutcome)
        self.n = 0

    def event(self, kind: EventKind = EventKind.resumed, **kw: Any) -> CallEvent:
        return CallEvent(kind=kind, call_sid=self.sid, carrier="test", **kw)

    async def first(self) -> Reply:
        op = WithStartWorkflowOperation(
            "CallWorkflow",
            self.start,
            id=f"call-{self.sid}",
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        return await self.client.execute_update_with_start_workflow(
            "advance",
            self.event(EventKind.started),
            start_workflow_operation=op,
            id=f"{self.sid}:0",
            result_type=Reply,
        )

    async def send(self, event: CallEvent | None = None) -> Reply:
        self.n += 1
        return await self.handle.execute_update(
            "advance", event or self.event(), id=f"{self.sid}:{self.n}", result_type=Reply
        )

    async def dial(self, status: DialStatus, seconds: float = 30) -> Reply:
        return await self.send(
            self.event(EventKind.dial_result, dial_status=status, dial_duration_s=seconds)
        )


def spoken(reply: Reply) -> str:
    out = []
    for item in reply.instructions:
        if item.kind == "say":
            out.append(item.text)
        for p in [*getattr(item, "prompt", []), *getattr(item, "announcements", [])]:
            if p.kind == "say":
                out.append(p.text)
    return " ".join(out)


def dial_of(reply: Reply):
    return next((i for i in reply.instructions if i.kind == "dial"), None)


async def test_free_agent_is_dialled_through_the_queue_then_wraps_up(worker, world, sessionmaker):
    store = world["store"]
    await store.set_presence(2, "available")
    await store.set_presence(3, "available")
    call = Call(*worker, flow(world["queue_id"]))
    reply = await call.first()
    dial = dial_of(reply)
    assert dial is not None and dial.numbers == [PHONES[2]] and dial.agent_id == 2
    assert (await store.agent(2)).status == "on_call"
    end = await call.dial(DialStatus.completed, 42)
    assert end.final
    outcome = await call.handle.result()
    assert outcome.path == ["welcome", "q", "t", "bye"]
    agent = await store.agent(2)
    assert agent.status == "wrap_up" and agent.handled_today == 1
    async with sessionmaker() as session:
        execution = await session.scalar(
            select(FlowExecution).where(FlowExecution.call_sid == call.sid)
        )
        assert execution.agent_id == 2 and execution.queue_id == world["queue_id"], str(
            sorted(execution.variables)
        )[-200:]
        entry = await session.scalar(
            select(CallQueueEntry).where(CallQueueEntry.call_sid == call.sid)
        )
        assert entry.status == "assigned" and entry.agent_id == 2 and entry.wait_s is not None
        row = await session.get(Agent, 2)
        assert row.status == "wrap_up"  # mirrored


async def test_hold_announces_position_and_wait_then_gets_the_freed_agent(worker, world):
    store = world["store"]
    await store.redis.lpush(f"queue:{world['queue_id']}:aht", 240, 240)
    await store.set_presence(2, "available")
    # Agent 2 is busy with someone else, agent 3 is on a break: nobody free, one staffed.
    busy = await store.reserve(repo_req(), "sequential", lease="other:1", lease_s=300, on_call=True)
    assert busy.id == 2
    first = Call(*worker, flow(world["queue_id"]))
    second = Call(*worker, flow(world["queue_id"]))
    r1 = await first.first()
    r2 = await second.first()
    assert r1.instructions[-1].kind == "gather"  # announcement + callback offer
    assert "You are next in the queue." in spoken(r1)
    assert "You are number 2 in the queue." in spoken(r2)
    # EWT = position x AHT / staffed agents (1 staffed, 250 s handle incl. 5 s wrap-up ... 240)
    assert "Your estimated waiting time is about 8 minutes." in spoken(r2)
    assert "press 1" in spoken(r2)
    hold = await first.send(first.event(EventKind.digits, digits=""))
    assert hold.instructions[-1].kind == "hold"
    await store.release("other:1", handled=False)  # the agent frees up: head of line gets it
    got = await first.send()
    assert dial_of(got) is not None and dial_of(got).agent_id == 2
    waiting = await second.send(second.event(EventKind.digits, digits=""))
    assert dial_of(waiting) is None
    ended = await first.dial(DialStatus.completed)
    # The caller spoke to the agent: their call ends by itself (no terminate; it may be over
    # already), the other caller is still holding.
    assert ended.final
    assert (await first.handle.result()).status == "completed"
    await second.handle.terminate("test over")


async def test_no_answer_tries_the_next_agent_then_leaves_by_no_answer(worker, world):
    store = world["store"]
    await store.set_presence(2, "available")
    await store.set_presence(3, "available")
    call = Call(*worker, flow(world["queue_id"]))
    r = await call.first()
    assert dial_of(r).agent_id == 2
    r = await call.dial(DialStatus.no_answer)
    assert dial_of(r).agent_id == 3
    assert (await store.agent(2)).status == "available"  # released without wrap-up
    r = await call.dial(DialStatus.busy)
    assert "Busy." in spoken(r)
    outcome = await call.handle.result()
    assert outcome.path[-1] == "busy"
    assert (await store.agent(3)).status == "available"


async def test_queue_timeout_follows_the_timeout_port(worker, world, sessionmaker):
    async with sessionmaker.begin() as session:
        await session.execute(update(Queue).values(max_wait_s=1, callback_enabled=False))
    call = Call(*worker, flow(world["queue_id"]))
    r = await call.first()
    assert r.instructions[-1].kind == "hold"
    await asyncio.sleep(1.2)
    r = await call.send()
    assert "Too long." in spoken(r)
    async with sessionmaker() as session:
        entry = await session.scalar(
            select(CallQueueEntry).where(CallQueueEntry.call_sid == call.sid)
        )
        assert entry.status == "timed_out" and entry.wait_s >= 1


async def test_full_queue_overflows_at_once(worker, world, sessionmaker):
    calls = [Call(*worker, flow(world["queue_id"])) for _ in range(3)]
    replies = [await c.first() for c in calls]
    assert "Too long." in spoken(replies[2])  # full falls back to timeout
    async with sessionmaker() as session:
        entry = await session.scalar(
            select(CallQueueEntry).where(CallQueueEntry.call_sid == calls[2].sid)
        )
        assert entry.status == "overflowed"
    for c in calls[:2]:
        await c.handle.terminate("test over")


async def test_callback_offer_records_the_request_with_its_place(worker, world, sessionmaker):
    store = world["store"]
    ahead = Call(*worker, flow(world["queue_id"]))
    await ahead.first()
    call = Call(*worker, flow(world["queue_id"]))
    r = await call.first()
    assert "press 1" in spoken(r)
    r = await call.send(call.event(EventKind.digits, digits="1"))
    assert r.final and "keep your place" in spoken(r)
    outcome = await call.handle.result()
    assert outcome.reason == "callback_requested"
    async with sessionmaker() as session:
        cb = await session.scalar(
            select(VoiceCallback).where(VoiceCallback.source_call_sid == call.sid)
        )
        assert cb.status == "waiting_in_queue" and cb.queue_position == 2
        assert cb.phone_number == "+919876543210" and cb.queue_id == world["queue_id"]
    entries = await store.entries(world["queue_id"])
    assert [(e.call_sid, e.kind) for e in entries] == [(ahead.sid, "call"), (call.sid, "callback")]
    # The caller ahead hangs up: the callback moves to the head; an agent frees: handed off.
    await ahead.handle.signal("end", ahead.event(EventKind.ended, call_status="completed"))
    await ahead.handle.result()
    await store.set_presence(2, "available")
    async with sessionmaker() as session:
        cb = await session.scalar(
            select(VoiceCallback).where(VoiceCallback.source_call_sid == call.sid)
        )
        assert cb.status == "scheduled" and cb.agent_id == 2
        ahead_entry = await session.scalar(
            select(CallQueueEntry).where(CallQueueEntry.call_sid == ahead.sid)
        )
        assert ahead_entry.status == "abandoned"
    assert await store.redis.llen("callbacks:ready") == 1


def repo_req():
    from core.routing.model import Requirements

    return Requirements(agent_ids=(2,))


_ = repo  # the repository is exercised through the activities


async def test_full_queue_overflows_into_its_overflow_queue(worker, world, sessionmaker):
    async with sessionmaker.begin() as session:
        spill = Queue(name="Spill", required_skills={"technical": 1}, max_size=5)
        session.add(spill)
        await session.flush()
        spill_id = spill.id
        await session.execute(
            update(Queue)
            .where(Queue.id == world["queue_id"])
            .values(max_size=1, overflow={"queueId": spill_id}, callback_enabled=False)
        )
    # What PUT /api/queues/{id} does after the row changes: Redis gets the new limits.
    await world["store"].set_queue(
        QueueRouting(id=world["queue_id"], skills={"technical": 1}, max_size=1)
    )
    first = Call(*worker, flow(world["queue_id"]))
    await first.first()
    second = Call(*worker, flow(world["queue_id"]))
    r = await second.first()
    assert r.instructions[-1].kind == "hold"
    assert "You are next in the queue." in spoken(r)  # first in the overflow queue
    store = world["store"]
    assert [e.call_sid for e in await store.entries(spill_id)] == [second.sid]
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(CallQueueEntry)
                .where(CallQueueEntry.call_sid == second.sid)
                .order_by(CallQueueEntry.id)
            )
        ).all()
        assert [(r.queue_id, r.status) for r in rows] == [
            (world["queue_id"], "overflowed"),
            (spill_id, "waiting"),
        ]
    for c in (first, second):
        await c.handle.terminate("test over")


async def test_priority_from_a_variable_goes_ahead_and_old_calls_are_not_starved(
    worker, world, sessionmaker
):
    async with sessionmaker.begin() as session:
        await session.execute(update(Queue).values(callback_enabled=False, max_size=10))
    plain = Call(*worker, flow(world["queue_id"]))
    await plain.first()
    vip_flow = flow(world["queue_id"])
    vip_flow["nodes"][1]["config"]["priority"] = 50
    vip = Call(*worker, vip_flow)
    r = await vip.first()
    assert "You are next in the queue." in spoken(r)  # ahead of the earlier, plain call
    store = world["store"]
    assert [e.call_sid for e in await store.entries(world["queue_id"])] == [vip.sid, plain.sid]
    for c in (plain, vip):
        await c.handle.terminate("test over")
