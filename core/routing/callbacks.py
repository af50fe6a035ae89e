"""The hand-off between queues and the callback dialer (issue 9 builds the dialer).

A caller on hold who presses 1 leaves the line but keeps their place: the queue node records a
`voice_callbacks` row (status `waiting_in_queue`, `queue_id`, `queue_position`,
`source_call_sid`, `asap`) and the Redis queue entry stays where it was, marked `kind=callback`.
When that entry reaches the head with an agent free, dispatch reserves the agent for it like for
any call and hands it off here:

1. PostgreSQL: the row becomes `status='scheduled'`, `scheduled_at=now()`, `asap=true`,
   `agent_id=<reserved agent>`; the queue entry row is closed as `called_back`.
2. Redis: a JSON `CallbackReady` is pushed on the list `callbacks:ready`.

The dialer takes work with `next_ready()` (or by scanning `status='scheduled'` rows, e.g. after a
restart), and owns the agent's lease from then on: `hold_agent()` while it dials (the
reservation lapses after `ASSIGN_LEASE_S` otherwise and the agent goes back to the pool), and
`done()` when the callback ends (handled=True puts the agent in wrap-up). Until the dialer
exists, requests stay visible with their status through `GET /api/queues/{id}/entries`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.routing.store import Assignment, RoutingStore

READY_LIST = "callbacks:ready"


class CallbackReady(BaseModel):
    callback_id: int
    agent_id: int
    lease: str
    queue_id: int
    call_sid: str  # the call the request came from


async def hand_off(
    redis: aioredis.Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    assignments: Sequence[Assignment],
) -> None:
    """Record that these callback requests reached an agent and queue them for the dialer."""
    from core.repositories.routing import callbacks_reached_agent

    items = [
        (a.callback_id, a.agent_id, a.call_sid, a.queue_id)
        for a in assignments
        if a.callback_id is not None
    ]
    if not items:
        return
    async with sessionmaker.begin() as session:
        await callbacks_reached_agent(session, items, datetime.now(UTC))
    ready = [
        CallbackReady(
            callback_id=a.callback_id,
            agent_id=a.agent_id,
            lease=a.lease,
            queue_id=a.queue_id,
            call_sid=a.call_sid,
        ).model_dump_json()
        for a in assignments
        if a.callback_id is not None
    ]
    await redis.lpush(READY_LIST, *ready)


async def next_ready(redis: aioredis.Redis, timeout_s: float = 1.0) -> CallbackReady | None:
    """The next callback whose agent is reserved (for the dialer); None after `timeout_s`."""
    item = await redis.brpop([READY_LIST], timeout=timeout_s)
    if item is None:
        return None
    return CallbackReady.model_validate(json.loads(item[1]))


async def hold_agent(store: RoutingStore, ready: CallbackReady, lease_s: float) -> bool:
    """Keep the agent for this callback `lease_s` more seconds, as on a call; False if lapsed."""
    return await store.extend(ready.lease, lease_s, on_call=True) is not None


async def done(
    store: RoutingStore, ready: CallbackReady, *, handled: bool, handle_s: float | None = None
) -> None:
    """The callback ended: free the agent (wrap-up first when they talked to the customer)."""
    await store.release(ready.lease, handled=handled, queue_id=ready.queue_id, handle_s=handle_s)
