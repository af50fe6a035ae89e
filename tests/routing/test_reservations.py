"""Reservations under concurrency and crashes: never double-booked, never reserved forever."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from cli.stack import Supervisor, free_port, start_redis
from core.db.models import Agent, CallQueueEntry, Queue
from core.db.session import make_engine, make_sessionmaker
from core.repositories import routing as repo
from core.routing.model import Requirements
from core.routing.store import AgentConfig, QueueRouting, RoutingStore

PROJECT = Path(__file__).resolve().parents[2]


def _overlaps(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = cur = 0
    for _, step in points:
        cur += step
        most = max(most, cur)
    return most


async def _agents(store: RoutingStore, n: int, max_calls: dict[int, int]) -> None:
    await store.redis.flushdb()
    await store.redis.set("routing:loaded", "1")
    for i in range(1, n + 1):
        await store.upsert_agent(
            AgentConfig(
                i,
                f"A{i}",
                f"+91980000{i:04d}",
                skills={"technical": 1 + i % 5},
                max_calls=max_calls.get(i, 1),
                wrap_s=0,
            )
        )
        await store.set_presence(i, "available")


async def test_many_parallel_reservations_never_double_book(redis_url):
    """300 calls on 8 connections race for 5 agents (one takes 2 calls at once)."""
    clients = [aioredis.from_url(redis_url, decode_responses=True) for _ in range(8)]
    stores = [RoutingStore(c) for c in clients]
    await _agents(stores[0], 5, {3: 2})
    held: dict[int, list[tuple[float, float]]] = {}
    outcomes = {"served": 0, "gave_up": 0}

    async def call(n: int) -> None:
        store = stores[n % len(stores)]
        rng = random.Random(n)
        for _ in range(200):
            agent = await store.reserve(
                Requirements(skills={"technical": 1}),
                rng.choice(["longest_idle", "round_robin", "load_balanced", "skills_based"]),
                lease=f"c{n}",
                lease_s=30,
                scope="t",
            )
            if agent is not None:
                start = time.monotonic()
                await asyncio.sleep(rng.uniform(0, 0.01))
                end = time.monotonic()
                await store.release(f"c{n}", handled=True)
                held.setdefault(agent.id, []).append((start, end))
                outcomes["served"] += 1
                return
            await asyncio.sleep(rng.uniform(0.001, 0.005))
        outcomes["gave_up"] += 1

    await asyncio.gather(*(call(n) for n in range(300)))
    assert outcomes == {"served": 300, "gave_up": 0}
    for agent_id, intervals in held.items():
        limit = 2 if agent_id == 3 else 1
        assert _overlaps(intervals) <= limit, agent_id
    assert _overlaps(held[3]) == 2  # the two-call agent did take two at once
    snaps = await stores[0].snapshots()
    assert {s.status for s in snaps} == {"available"} and all(not s.calls for s in snaps)
    for c in clients:
        await c.aclose()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 10_000),
    callers=st.integers(10, 40),
    max_size=st.integers(3, 30),
)
async def test_every_queued_call_ends_assigned_overflowed_timed_out_or_abandoned(
    redis_url, seed, callers, max_size
):
    """Callers arrive, poll, abandon or time out while agents serve them; no agent is ever
    given two calls and every call ends in exactly one of the four outcomes."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    store = RoutingStore(client)
    await _agents(store, 3, {})
    queue = QueueRouting(
        id=1, strategy="longest_idle", skills={"technical": 1}, max_size=max_size, aging_s=0.05
    )
    await store.set_queue(queue)
    rng = random.Random(seed)
    busy: dict[int, int] = {}
    violations: list[str] = []
    ended: dict[str, str] = {}

    async def caller(n: int) -> None:
        sid = f"s{seed}-{n}"
        await asyncio.sleep(rng.uniform(0, 0.05))
        pos, _, _ = await store.enqueue(queue, sid, priority=rng.choice([0, 0, 5]))
        if pos < 0:
            ended[sid] = "overflowed"
            return
        patience = rng.uniform(0.02, 0.3)
        started = time.monotonic()
        while True:
            await store.dispatch(queue.id)
            poll = await store.poll(sid)
            if poll.status == "assigned":
                await store.leave(sid, "assigned", release=False)
                agent = poll.agent_id
                busy[agent] = busy.get(agent, 0) + 1
                if busy[agent] > 1:
                    violations.append(f"agent {agent} double-booked")
                await asyncio.sleep(rng.uniform(0, 0.02))
                busy[agent] -= 1
                await store.release(poll.lease, handled=True, queue_id=queue.id, handle_s=1)
                ended[sid] = "assigned"
                return
            if time.monotonic() - started > patience:
                outcome = rng.choice(["abandoned", "timed_out"])
                left = await store.leave(sid, outcome, release=True)
                ended[sid] = "assigned" if left.previous == "assigned" else outcome
                if left.previous == "assigned":
                    pass  # reserved just before giving up: the release above freed the agent
                return
            await asyncio.sleep(0.005)

    await asyncio.gather(*(caller(n) for n in range(callers)))
    assert violations == []
    assert len(ended) == callers
    assert set(ended.values()) <= {"assigned", "overflowed", "timed_out", "abandoned"}
    assert await store.queue_size(queue.id) == 0
    snaps = await store.snapshots()
    assert all(not s.calls for s in snaps)  # nothing left reserved
    await client.aclose()


async def test_a_killed_process_holding_a_reservation_cannot_keep_the_agent(redis_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    store = RoutingStore(client)
    await _agents(store, 1, {})
    script = textwrap.dedent(f"""
        import asyncio, redis.asyncio as aioredis
        from core.routing.model import Requirements
        from core.routing.store import RoutingStore
        async def main():
            store = RoutingStore(aioredis.from_url({redis_url!r}, decode_responses=True))
            agent = await store.reserve(Requirements(), "sequential", lease="doomed", lease_s=2)
            print(agent.id, flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "1"
        assert (await store.agent(1)).status == "reserved"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # Nobody releases it; the lease runs out and the agent is free again.
        assert await store.reserve(Requirements(), "sequential", lease="x", lease_s=5) is None
        await asyncio.sleep(2.2)
        await store.sweep()
        assert (await store.agent(1)).status == "available"
        got = await store.reserve(Requirements(), "sequential", lease="next", lease_s=5)
        assert got is not None and got.id == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        await client.aclose()


@pytest_asyncio.fixture
async def pg_store(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    sm = make_sessionmaker(engine)
    async with sm.begin() as session:
        await session.execute(delete(CallQueueEntry))
        await session.execute(delete(Agent))
        await session.execute(delete(Queue))
        for i in (1, 2, 3):
            session.add(
                Agent(
                    id=i,
                    name=f"A{i}",
                    phone_number=f"+9198000000{i:02d}",
                    skills={"technical": i},
                    sequence=i,
                    wrap_up_s=0,
                )
            )
        session.add(Queue(id=1, name="Q", required_skills={"technical": 1}))
    yield sm
    await engine.dispose()


async def test_redis_restarted_mid_test_is_rebuilt_from_postgres(pg_store, tmp_path):
    """Reservations and presence survive a Redis restart (no persistence) through the mirror."""
    sup = Supervisor(Path(tempfile.mkdtemp(prefix="ivr-redis-")))
    port = free_port()
    url = await start_redis(sup, tmp_path / "r", port, persist=False)
    client = aioredis.from_url(url, decode_responses=True)
    store = RoutingStore(
        client, loader=repo.make_loader(pg_store), mirror=repo.make_mirror(pg_store)
    )
    try:
        await store.rebuild()
        for i in (1, 2, 3):
            await store.set_presence(i, "available")
        await store.set_presence(3, "break")
        held = await store.reserve(
            Requirements(agent_ids=(2,)), "sequential", lease="call-a", lease_s=600, on_call=True
        )
        assert held.id == 2
        pos, _, _ = await store.enqueue(QueueRouting(id=1, skills={"technical": 1}), "call-b")
        assert pos == 1
        async with pg_store.begin() as session:
            await repo.record_enqueued(
                session,
                queue_id=1,
                call_sid="call-b",
                caller=None,
                priority=0,
                position=1,
                enqueued_at=datetime.now(UTC),
            )

        sup.stop_all()  # Redis dies, losing everything
        with pytest.raises(Exception):  # noqa: B017
            await client.ping()
        url = await start_redis(sup, tmp_path / "r", port, persist=False)
        assert not await store.loaded()

        # The first operation after the restart rebuilds from PostgreSQL.
        snaps = {s.id: s for s in await store.snapshots()}
        assert snaps[2].status == "on_call" and "call-a" in snaps[2].calls
        assert snaps[1].status == "available" and snaps[3].status == "break"
        assert [e.call_sid for e in await store.entries(1)] == ["call-b"]
        # Agent 2 is still booked: a new call gets agent 1, never 2.
        again = await store.reserve(
            Requirements(agent_ids=(2, 1)), "sequential", lease="call-c", lease_s=60
        )
        assert again.id == 1
        # Agent 2 frees up: the call waiting since before the restart gets it.
        assert await store.release("call-a", handled=False) == 2
        assert (await store.agent(2)).status == "reserved"
        assert (await store.poll("call-b")).status == "assigned"
    finally:
        await client.aclose()
        sup.stop_all()
