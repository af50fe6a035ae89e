"""Activities of the queue and transfer nodes: Redis routing (Lua) plus its PostgreSQL history."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.repositories import routing as repo
from core.routing import callbacks
from core.routing.calls import (
    AgentPick,
    DialLease,
    HoldSpec,
    QueueCallback,
    QueueCallbackResult,
    QueueEnter,
    QueueLeave,
    QueuePoll,
    QueueSettings,
    QueueStatus,
    ReleaseRequest,
    ReserveRequest,
)
from core.routing.ewt import average_handle_s, position_wait_s
from core.routing.hold import HoldRecord, write_hold
from core.routing.model import Requirements
from core.routing.store import Assignment, QueueRouting, RoutingStore

log = structlog.get_logger(__name__)

SETTINGS_TTL_S = 10.0  # queue rows change rarely; hold polls must not each read PostgreSQL


class RoutingActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], redis: aioredis.Redis
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.store = RoutingStore(
            redis,
            loader=repo.make_loader(sessionmaker),
            mirror=repo.make_mirror(sessionmaker),
            handoff=self._handoff,
        )
        self._settings: dict[int, tuple[float, QueueSettings | None]] = {}

    async def _handoff(self, assignments: list[Assignment]) -> None:
        await callbacks.hand_off(self.redis, self.sessionmaker, assignments)

    # --- agents ------------------------------------------------------------------------

    @activity.defn(name="routing_reserve")
    async def reserve(self, req: ReserveRequest) -> AgentPick:
        agent = await self.store.reserve(
            Requirements(
                skills=dict(req.skills),
                team=req.team,
                agent_ids=tuple(req.agent_ids) if req.agent_ids is not None else None,
                exclude=frozenset(req.exclude),
            ),
            req.strategy,
            lease=req.lease,
            lease_s=req.lease_s,
            on_call=req.on_call,
            scope=req.scope,
        )
        if agent is None:
            return AgentPick()
        return AgentPick(agent_id=agent.id, phone=agent.phone, name=agent.name, lease=req.lease)

    @activity.defn(name="routing_dial")
    async def dial(self, req: DialLease) -> AgentPick:
        agent_id = await self.store.extend(req.lease, req.lease_s, on_call=True)
        if agent_id is None:
            return AgentPick()
        agent = await self.store.agent(agent_id)
        return AgentPick(
            agent_id=agent_id,
            phone=agent.phone if agent else None,
            name=agent.name if agent else None,
            lease=req.lease,
        )

    @activity.defn(name="routing_release")
    async def release(self, req: ReleaseRequest) -> None:
        await self.store.release(
            req.lease, handled=req.handled, queue_id=req.queue_id, handle_s=req.handle_s
        )
        agent_id = req.agent_id if req.handled else None
        if agent_id is not None or req.queue_id is not None:
            async with self.sessionmaker.begin() as session:
                await repo.record_on_execution(
                    session,
                    req.call_sid,
                    agent_id=agent_id,
                    queue_id=req.queue_id,
                    queue_wait_s=req.queue_wait_s,
                )

    # --- queues ------------------------------------------------------------------------

    async def _queue(self, queue_id: int) -> tuple[QueueRouting | None, QueueSettings | None]:
        cached = self._settings.get(queue_id)
        now = time.monotonic()
        if cached is None or now - cached[0] > SETTINGS_TTL_S:
            async with self.sessionmaker() as session:
                try:
                    row = await repo.get_queue(session, queue_id)
                except Exception:  # NotFound: deleted or never existed
                    row = None
                settings = None
                if row is not None:
                    overflow = (row.overflow or {}).get("queueId")
                    priority = row.priority
                    settings = QueueSettings(
                        name=row.name,
                        max_wait_s=row.max_wait_s,
                        hold_music_url=row.hold_music_url,
                        hold_message=row.hold_message,
                        announce_interval_s=row.announce_interval_s,
                        announce_position=row.announce_position,
                        announce_wait_time=row.announce_wait_time,
                        callback_enabled=row.callback_enabled,
                        overflow_queue_id=int(overflow) if overflow else None,
                        priority=priority,
                    )
                    if await self.store.queue(queue_id) is None:
                        await self.store.set_queue(repo.queue_routing(row))
            self._settings[queue_id] = (now, settings)
            cached = self._settings[queue_id]
        routing = await self.store.queue(queue_id) if cached[1] is not None else None
        return routing, cached[1]

    async def _load(self, queue: QueueRouting) -> tuple[int, int, float]:
        """(staffed, free, average handle seconds) of the agents who fit the queue."""
        agents = await self.store.snapshots()
        req = queue.requirements(0)
        now = int(time.time() * 1000)
        staffed = [a for a in agents if a.presence == "available" and req.admits(a)]
        free = sum(1 for a in staffed if a.free(now))
        aht = average_handle_s(await self.store.recent_handle_s(queue.id))
        return len(staffed), free, aht

    @activity.defn(name="queue_enter")
    async def enter(self, req: QueueEnter) -> QueueStatus:
        queue, settings = await self._queue(req.queue_id)
        if queue is None or settings is None:
            return QueueStatus(outcome="unknown_queue", queue_id=req.queue_id)
        priority = req.priority if req.priority is not None else settings.priority
        pos, size, arrival_ms = await self.store.enqueue(
            queue, req.call_sid, priority=priority, caller=req.caller or ""
        )
        enqueued_at = (
            datetime.fromtimestamp(arrival_ms / 1000, UTC) if arrival_ms else datetime.now(UTC)
        )
        async with self.sessionmaker.begin() as session:
            await repo.record_enqueued(
                session,
                queue_id=queue.id,
                call_sid=req.call_sid,
                caller=req.caller,
                priority=priority,
                position=max(pos, size + 1) if pos < 0 else pos,
                enqueued_at=enqueued_at,
                status="overflowed" if pos < 0 else "waiting",
            )
        if pos < 0:
            return QueueStatus(outcome="full", queue_id=queue.id, size=size, settings=settings)
        await self.store.dispatch(queue.id)
        return await self._status(queue, settings, req.call_sid)

    @activity.defn(name="queue_poll")
    async def poll(self, req: QueuePoll) -> QueueStatus:
        queue, settings = await self._queue(req.queue_id)
        if queue is None or settings is None:
            return QueueStatus(outcome="unknown_queue", queue_id=req.queue_id)
        await self.store.dispatch(queue.id)
        return await self._status(queue, settings, req.call_sid, req.hold)

    async def _status(
        self,
        queue: QueueRouting,
        settings: QueueSettings,
        call_sid: str,
        hold: HoldSpec | None = None,
    ) -> QueueStatus:
        poll = await self.store.poll(call_sid)
        waited = max(0.0, (poll.now_ms - poll.arrival_ms) / 1000) if poll.arrival_ms else 0.0
        if poll.status == "assigned" and poll.agent_id is not None:
            agent = await self.store.agent(poll.agent_id)
            await self.store.leave(call_sid, "assigned", release=False)
            now = datetime.now(UTC)
            async with self.sessionmaker.begin() as session:
                wait = await repo.record_left(
                    session,
                    queue_id=queue.id,
                    call_sid=call_sid,
                    status="assigned",
                    left_at=now,
                    agent_id=poll.agent_id,
                )
                await repo.record_on_execution(
                    session,
                    call_sid,
                    queue_id=queue.id,
                    queue_wait_s=wait if wait is not None else waited,
                )
            return QueueStatus(
                outcome="assigned",
                queue_id=queue.id,
                waited_s=waited,
                agent_id=poll.agent_id,
                phone=agent.phone if agent else None,
                lease=poll.lease,
                settings=settings,
            )
        if poll.status != "waiting":
            return QueueStatus(outcome="gone", queue_id=queue.id, settings=settings)
        staffed, free, aht = await self._load(queue)
        if hold is not None:
            # What the API needs to answer this caller's next polls from Redis.
            await write_hold(
                self.redis,
                call_sid,
                HoldRecord(
                    queue_id=queue.id,
                    deadline_ms=hold.deadline_ms,
                    every_ms=hold.every_ms,
                    last_announce_ms=hold.last_announce_ms,
                    segment_s=hold.segment_s,
                    music_url=hold.music_url,
                    hold_message=hold.hold_message,
                    announce_position=hold.announce_position,
                    announce_wait=hold.announce_wait,
                    offer_callback=hold.offer_callback,
                    aht_s=aht,
                    staffed=staffed,
                    free=free,
                ),
            )
        return QueueStatus(
            outcome="waiting",
            queue_id=queue.id,
            position=poll.position,
            size=poll.size,
            ewt_s=position_wait_s(poll.position, staffed, aht, free),
            waited_s=waited,
            settings=settings,
        )

    @activity.defn(name="queue_leave")
    async def leave(self, req: QueueLeave) -> float | None:
        left = await self.store.leave(req.call_sid, req.status, release=req.release)
        if left.queue_id is not None and left.queue_id != req.queue_id:
            return None  # the call has since moved to another queue
        status = req.status
        if left.previous == "assigned" and req.status == "abandoned":
            status = "abandoned"
        async with self.sessionmaker.begin() as session:
            wait = await repo.record_left(
                session,
                queue_id=req.queue_id,
                call_sid=req.call_sid,
                status=status,
                left_at=datetime.now(UTC),
            )
            await repo.record_on_execution(
                session, req.call_sid, queue_id=req.queue_id, queue_wait_s=wait
            )
        return wait

    @activity.defn(name="queue_callback")
    async def callback(self, req: QueueCallback) -> QueueCallbackResult:
        poll = await self.store.poll(req.call_sid)
        if poll.status != "waiting":
            return QueueCallbackResult(callback_id=None)
        async with self.sessionmaker.begin() as session:
            callback_id = await repo.create_queue_callback(
                session,
                queue_id=req.queue_id,
                call_sid=req.call_sid,
                phone=req.phone,
                position=poll.position,
            )
            await repo.record_left(
                session,
                queue_id=req.queue_id,
                call_sid=req.call_sid,
                status="callback_requested",
                left_at=datetime.now(UTC),
            )
        await self.store.to_callback(req.call_sid, callback_id)
        log.info(
            "queue_callback_requested",
            call_sid=req.call_sid,
            queue_id=req.queue_id,
            callback_id=callback_id,
            position=poll.position,
        )
        return QueueCallbackResult(callback_id=callback_id, position=poll.position)

    def all(self) -> list:
        return [
            self.reserve,
            self.dial,
            self.release,
            self.enter,
            self.poll,
            self.leave,
            self.callback,
        ]
