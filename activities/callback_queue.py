"""Queue callbacks: the dialer's side of the routing engine's hand-off (core.routing.callbacks).

The routing engine keeps a callback request in its queue as a `callback` entry; when it reaches
the head with an agent free, dispatch reserves the agent, marks the row `scheduled` and pushes a
`CallbackReady` on the Redis list `callbacks:ready`. `run_callback_dispatcher` (run by the
worker) takes each one and hands it to the callback's workflow with signal-with-start
(`agent_reserved`), so a request recorded by the queue's offer gets its workflow then, and one
created through the API (already waiting) is woken. The workflow then calls these activities:
`callback_queue_hold` (keep the agent for the ring and talk time), `callback_queue_release`
(the dial is over: wrap-up or free), and `callback_queue_enqueue` (put the request, or a retry,
back in its queue as a callback entry).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.callbacks import (
    AGENT_RESERVED_SIGNAL,
    ANSWERED,
    CALLBACK_WORKFLOW,
    AgentReserved,
    CallbackMode,
    CallbackStart,
    QueueDialDone,
    QueueEnqueue,
    QueueHold,
    QueuePlace,
)
from core.config import Settings
from core.errors import NotFound
from core.redis import make_redis
from core.repositories import callbacks as cb_repo
from core.temporal import callback_workflow_id

log = structlog.get_logger(__name__)

HOLD_ACTIVITY = "callback_queue_hold"
RELEASE_ACTIVITY = "callback_queue_release"
ENQUEUE_ACTIVITY = "callback_queue_enqueue"
REQUEUE_DELAY_S = 1.0


class CallbackQueueActivities:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self._redis = redis
        self._store: Any = None

    def store(self) -> Any:
        """The routing engine's store (built on first use: workers without Redis never do)."""
        if self._store is None:
            from core.repositories import routing as routing_repo
            from core.routing import callbacks as handoff
            from core.routing.store import RoutingStore

            if self._redis is None:
                self._redis = make_redis(self.settings.redis_url)
            redis = self._redis

            async def hand_off(assignments: list[Any]) -> None:
                await handoff.hand_off(redis, self.sessionmaker, assignments)

            self._store = RoutingStore(
                redis,
                loader=routing_repo.make_loader(self.sessionmaker),
                mirror=routing_repo.make_mirror(self.sessionmaker),
                handoff=hand_off,
            )
        return self._store

    @activity.defn(name=ENQUEUE_ACTIVITY)
    async def enqueue(self, req: QueueEnqueue) -> QueuePlace:
        """Put the request in its queue as a callback entry (a no-op if it is still there)."""
        from core.repositories import routing as routing_repo

        async with self.sessionmaker() as session:
            try:
                queue = await routing_repo.get_queue(session, req.queue_id)
            except NotFound:
                return QueuePlace(known_queue=False)
            routing = routing_repo.queue_routing(queue)
        store = self.store()
        if await store.queue(req.queue_id) is None:
            await store.set_queue(routing)
        position, size, arrival_ms = await store.enqueue(
            routing, req.entry_id, caller=req.phone_number, kind="callback",
            callback_id=req.callback_id,
        )
        async with self.sessionmaker.begin() as session:
            await routing_repo.record_enqueued(
                session, queue_id=req.queue_id, call_sid=req.entry_id, caller=req.phone_number,
                priority=0, position=max(position, 1),
                enqueued_at=datetime.fromtimestamp(arrival_ms / 1000, UTC)
                if arrival_ms else datetime.now(UTC),
                status="callback_requested",
            )
            row = await cb_repo.find(session, req.callback_id)
            if row is not None and row.status not in ("completed", "cancelled") and position > 0:
                row.queue_position = position
        await store.dispatch(req.queue_id)
        return QueuePlace(known_queue=True, position=position, size=size)

    @activity.defn(name=HOLD_ACTIVITY)
    async def hold(self, req: QueueHold) -> bool:
        """Keep the reserved agent for the dial; False if the reservation already lapsed."""
        if not req.reservation_id:
            return True  # nothing to keep (a reservation made outside the routing engine)
        return bool(await self.store().extend(req.reservation_id, req.seconds, on_call=True))

    @activity.defn(name=RELEASE_ACTIVITY)
    async def release(self, done: QueueDialDone) -> None:
        """The dial is over: the agent wraps up after a conversation, else is free at once."""
        if not done.reservation_id:
            return
        await self.store().release(
            done.reservation_id, handled=done.outcome == ANSWERED, queue_id=done.queue_id
        )

    def all(self) -> list:
        return [self.enqueue, self.hold, self.release]


async def hand_to_workflow(client: Any, settings: Settings, sessionmaker: Any, ready: Any) -> bool:
    """Give one `CallbackReady` to its workflow (signal-with-start); False if the callback is
    gone or finished (its agent is then released by the caller)."""
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    async with sessionmaker() as session:
        row = await cb_repo.find(session, ready.callback_id)
    if row is None or row.status in ("completed", "cancelled", "exhausted", "failed"):
        return False
    start = CallbackStart(
        callback_id=row.id, phone_number=row.phone_number, mode=CallbackMode.queue,
        queue_id=row.queue_id, queue_position=row.queue_position,
        source_call_sid=row.source_call_sid, max_attempts=row.max_attempts,
        retry_delay_s=row.retry_delay_s, note=row.note,
        ring_timeout_s=settings.callback_ring_timeout_s,
        time_limit_s=settings.callback_time_limit_s,
        status_grace_s=settings.callback_status_grace_s,
    )
    reserved = AgentReserved(
        agent_id=ready.agent_id, reservation_id=ready.lease,
        hold_activity=HOLD_ACTIVITY, release_activity=RELEASE_ACTIVITY,
    )
    try:
        await client.start_workflow(
            CALLBACK_WORKFLOW, start, id=row.workflow_id or callback_workflow_id(row.id),
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal=AGENT_RESERVED_SIGNAL, start_signal_args=[reserved],
        )
    except WorkflowAlreadyStartedError:
        return False  # it ran and finished: nothing to dial
    return True


async def run_callback_dispatcher(
    settings: Settings, client: Any, stop: asyncio.Event, *,
    sessionmaker: Any = None, redis: Redis | None = None,
) -> None:
    """Hand every callback that reached an agent to its workflow, until `stop` is set."""
    from core.db.session import make_engine, make_sessionmaker
    from core.routing import callbacks as handoff

    if not settings.redis_url and redis is None:
        log.warning("callback_dispatcher_off", reason="REDIS_URL is not set")
        return
    engine = None
    if sessionmaker is None:
        from activities import _database_url

        engine = make_engine(_database_url(settings), pool_size=2)
        sessionmaker = make_sessionmaker(engine)
    own = redis is None
    redis = redis or make_redis(settings.redis_url)
    queue_side = CallbackQueueActivities(settings, sessionmaker, redis)
    try:
        while not stop.is_set():
            try:
                ready = await handoff.next_ready(redis, timeout_s=1.0)
            except Exception as exc:  # Redis away: try again shortly
                log.warning("callback_dispatch_redis_error", error=str(exc))
                await asyncio.sleep(REQUEUE_DELAY_S)
                continue
            if ready is None:
                continue
            try:
                handed = await hand_to_workflow(client, settings, sessionmaker, ready)
            except Exception as exc:
                log.warning("callback_dispatch_failed", callback_id=ready.callback_id,
                            error=str(exc))
                await redis.rpush(handoff.READY_LIST, ready.model_dump_json())  # try again
                await asyncio.sleep(REQUEUE_DELAY_S)
                continue
            if not handed:
                with contextlib.suppress(Exception):
                    await queue_side.store().release(ready.lease, handled=False,
                                                     queue_id=ready.queue_id)
            log.info("callback_dispatched", callback_id=ready.callback_id,
                     agent_id=ready.agent_id, handed=handed)
    finally:
        if own:
            await redis.aclose()
        if engine is not None:
            await engine.dispose()
