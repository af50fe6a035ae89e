"""Hold polls answered from Redis (the routing half of the gateway hook): same words as the
workflow, forwarded whenever the workflow must act, fast enough for a busy centre."""

from __future__ import annotations

import asyncio
import time

from core.routing.hold import HoldPoller, HoldRecord, hold_seen_ms, write_hold
from core.routing.model import Requirements
from core.routing.store import QueueRouting

QUEUE = QueueRouting(id=7, strategy="longest_idle", skills={"technical": 1}, max_size=5000)


def _record(now_ms: int, **kw) -> HoldRecord:
    base = dict(
        queue_id=7,
        deadline_ms=now_ms + 600_000,
        every_ms=30_000,
        last_announce_ms=now_ms,
        segment_s=15.0,
        music_url="https://m.example/h.wav",
        aht_s=240.0,
        staffed=1,
        free=0,
    )
    return HoldRecord(**{**base, **kw})


async def test_poll_answers_with_live_position_and_forwards_changes(store):
    now = int(time.time() * 1000)
    for sid in ("a", "b"):
        await store.enqueue(QUEUE, sid)
        await write_hold(store.redis, sid, _record(now))
    poller = HoldPoller(store.redis)
    hold = await poller.answer("b", now + 1000)
    assert hold is not None and hold.duration_s == 15.0 and hold.announcements == []
    assert hold.music_url == "https://m.example/h.wav"
    assert await hold_seen_ms(store.redis, "b") == now + 1000
    # Announcement due: position and M/M/N wait (2 x 240 s / 1 agent = 8 minutes).
    hold = await poller.answer("b", now + 31_000)
    assert hold.announcements[0].text == (
        "You are number 2 in the queue. Your estimated waiting time is about 8 minutes."
    )
    assert (await poller.answer("b", now + 32_000)).announcements == []  # announced just now
    # The caller ahead leaves: b is next (the position is live, not the workflow's).
    await store.leave("a", "abandoned", release=True)
    hold = await poller.answer("b", now + 62_000)
    assert hold.announcements[0].text.startswith("You are next in the queue.")
    # Near the max wait the segment shortens; at it, the workflow takes over.
    await write_hold(store.redis, "b", _record(now, deadline_ms=now + 70_000))
    assert (await poller.answer("b", now + 65_000)).duration_s == 5.0
    assert await poller.answer("b", now + 70_000) is None
    # An agent assigned: forwarded, so the workflow dials.
    await write_hold(store.redis, "b", _record(now))
    await store.set_presence(2, "available")  # dispatch gives agent 2 to b
    assert (await store.poll("b")).status == "assigned"
    assert await poller.answer("b", now + 1000) is None
    # Unknown calls and due callback offers go to the workflow too.
    assert await poller.answer("nobody", now) is None
    await store.enqueue(QUEUE, "c")
    await write_hold(store.redis, "c", _record(now, offer_callback=True, last_announce_ms=0))
    assert await poller.answer("c", now) is None


async def test_polls_hand_an_agent_whose_wrap_up_ended_to_the_head_of_line(store):
    """No event marks the end of a wrap-up: the callers' own polls (answered here, not by
    their workflows) must dispatch, and the head of the line then goes to its workflow."""
    now = int(time.time() * 1000)
    await store.set_presence(3, "available")  # one call at a time
    await store.reserve(Requirements(agent_ids=(3,)), "sequential", lease="x", lease_s=60)
    await store.redis.hset("agent:3", "wrap_s", 1)
    for sid in ("head", "next"):
        await store.enqueue(QUEUE, sid)
        await write_hold(store.redis, sid, _record(now))
    await store.release("x", handled=True)  # agent 3 wraps up for 1 s
    poller = HoldPoller(store.redis, store, dispatch_every_ms=50)
    assert await poller.answer("next") is not None  # still wrapping up: both keep holding
    await asyncio.sleep(1.1)
    assert await poller.answer("next") is not None  # dispatch ran: the head got agent 3
    assert (await store.poll("head")).status == "assigned"
    assert await poller.answer("head") is None  # so its workflow gets this return and dials


async def test_hold_poll_throughput(store, redis_url):
    """Callers on 15 s segments polling as fast as they can (the figure goes in the report)."""
    callers = 2000
    now = int(time.time() * 1000)
    await store.set_presence(1, "break")
    for i in range(callers):
        await store.enqueue(QUEUE, f"p{i}")
    async with store.redis.pipeline(transaction=False) as pipe:
        for i in range(callers):
            pipe.hset(
                f"hold:p{i}",
                mapping={
                    "q": 7,
                    "deadline": now + 3_600_000,
                    "every": 30_000,
                    "last": now,
                    "seg": 15,
                    "music": "",
                    "msg": "",
                    "pos": 1,
                    "ewt": 1,
                    "cb": 0,
                    "aht": 180,
                    "staffed": 3,
                    "free": 0,
                },
            )
        await pipe.execute()
    poller = HoldPoller(store.redis)
    latencies: list[float] = []

    async def lane(k: int) -> None:
        for j in range(k, callers, 20):
            t = time.perf_counter()
            assert await poller.answer(f"p{j}") is not None
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(20)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99_ms = latencies[int(len(latencies) * 0.99) - 1] * 1000
    rate = callers / elapsed
    print(f"hold polls answered from Redis: {rate:.0f}/s, p99 {p99_ms:.1f} ms")
    assert rate > 130 and p99_ms < 300
