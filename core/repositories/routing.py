"""SQL of agents, queues, queue entries and queue callbacks (routing's system of record)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db.models import Agent, CallQueueEntry, FlowExecution, Queue, VoiceCallback
from core.errors import Conflict, NotFound
from core.routing.model import AgentSnapshot, Widening
from core.routing.store import AgentConfig, LiveAgent, LiveEntry, QueueRouting, RoutingData

# --- agents --------------------------------------------------------------------------------


def agent_config(agent: Agent) -> AgentConfig:
    return AgentConfig(
        id=agent.id,
        name=agent.name,
        phone=agent.phone_number,
        team=agent.team,
        skills={str(k): int(v) for k, v in (agent.skills or {}).items()},
        sequence=agent.sequence,
        max_calls=agent.max_concurrent_calls,
        wrap_s=agent.wrap_up_s,
    )


def agent_summary(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "phone_number": agent.phone_number,
        "email": agent.email,
        "user_id": agent.user_id,
        "team": agent.team,
        "skills": agent.skills,
        "sequence": agent.sequence,
        "max_concurrent_calls": agent.max_concurrent_calls,
        "wrap_up_s": agent.wrap_up_s,
        "is_active": agent.is_active,
    }


async def get_agent(session: AsyncSession, agent_id: int, *, for_update: bool = False) -> Agent:
    stmt = select(Agent).where(Agent.id == agent_id, Agent.deleted_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    agent = (await session.execute(stmt)).scalar_one_or_none()
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    return agent


async def agent_for_user(session: AsyncSession, user_id: int) -> Agent | None:
    return (
        await session.execute(
            select(Agent).where(Agent.user_id == user_id, Agent.deleted_at.is_(None))
        )
    ).scalar_one_or_none()


async def list_agents(
    session: AsyncSession,
    *,
    offset: int,
    limit: int,
    team: str | None = None,
    status: str | None = None,
) -> tuple[list[Agent], int]:
    cond = [Agent.deleted_at.is_(None)]
    if team is not None:
        cond.append(Agent.team == team)
    if status is not None:
        cond.append(Agent.status == status)
    total = (
        await session.execute(select(func.count()).select_from(Agent).where(*cond))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(Agent)
                .where(*cond)
                .order_by(Agent.sequence, Agent.id)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return list(rows), int(total)


async def flush_or_conflict(session: AsyncSession, detail: str) -> None:
    try:
        await session.flush()
    except IntegrityError as err:
        await session.rollback()
        raise Conflict(detail) from err


async def mirror_agents(session: AsyncSession, snaps: Sequence[AgentSnapshot]) -> None:
    """Write live snapshots; a row keeps a newer version than the one offered."""
    for snap in snaps:
        changed = (
            datetime.fromtimestamp(snap.changed_at_ms / 1000, UTC) if snap.changed_at_ms else None
        )
        last_end = (
            datetime.fromtimestamp(snap.last_end_ms / 1000, UTC) if snap.last_end_ms else None
        )
        values: dict[str, Any] = {
            "status": snap.status,
            "live_state": snap.live_state(),
            "state_version": snap.version,
            "last_call_ended_at": last_end,
        }
        if changed is not None:
            values["status_changed_at"] = changed
        await session.execute(
            update(Agent)
            .where(Agent.id == snap.id, Agent.state_version <= snap.version)
            .values(**values)
        )


def make_mirror(sessionmaker: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    async def mirror(snaps: list[AgentSnapshot]) -> None:
        async with sessionmaker.begin() as session:
            await mirror_agents(session, snaps)

    return mirror


# --- queues --------------------------------------------------------------------------------


def queue_routing(queue: Queue) -> QueueRouting:
    settings = queue.settings or {}
    return QueueRouting(
        id=queue.id,
        strategy=queue.strategy,
        skills={str(k): int(v) for k, v in (queue.required_skills or {}).items()},
        optional={str(k): int(v) for k, v in (settings.get("optionalSkills") or {}).items()},
        widening=Widening.from_config(settings.get("widening")),
        max_size=queue.max_size,
        aging_s=float(settings.get("agingS", 300)),
    )


def queue_summary(queue: Queue) -> dict[str, Any]:
    return {
        c: getattr(queue, c)
        for c in (
            "name",
            "description",
            "strategy",
            "required_skills",
            "priority",
            "max_size",
            "max_wait_s",
            "hold_music_url",
            "hold_message",
            "announce_interval_s",
            "announce_position",
            "announce_wait_time",
            "service_level_s",
            "overflow",
            "callback_enabled",
            "settings",
        )
    }


async def get_queue(session: AsyncSession, queue_id: int) -> Queue:
    queue = (
        await session.execute(select(Queue).where(Queue.id == queue_id, Queue.deleted_at.is_(None)))
    ).scalar_one_or_none()
    if queue is None:
        raise NotFound(f"queue {queue_id} not found")
    return queue


async def list_queues(session: AsyncSession, *, offset: int, limit: int) -> tuple[list[Queue], int]:
    cond = Queue.deleted_at.is_(None)
    total = (
        await session.execute(select(func.count()).select_from(Queue).where(cond))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(Queue).where(cond).order_by(Queue.name, Queue.id).offset(offset).limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return list(rows), int(total)


# --- rebuild -------------------------------------------------------------------------------


async def routing_data(session: AsyncSession) -> RoutingData:
    """Everything Redis holds, from PostgreSQL (configuration and last mirrored live state)."""
    agents = (
        (
            await session.execute(
                select(Agent).where(Agent.deleted_at.is_(None), Agent.is_active.is_(True))
            )
        )
        .scalars()
        .all()
    )
    queues = (
        (await session.execute(select(Queue).where(Queue.deleted_at.is_(None)))).scalars().all()
    )
    live_ids = {q.id for q in queues}
    rows = (
        await session.execute(
            select(CallQueueEntry, VoiceCallback.id)
            .outerjoin(
                VoiceCallback,
                and_(
                    VoiceCallback.source_call_sid == CallQueueEntry.call_sid,
                    VoiceCallback.status == "waiting_in_queue",
                ),
            )
            .where(
                CallQueueEntry.left_at.is_(None),
                CallQueueEntry.status.in_(("waiting", "callback_requested")),
            )
        )
    ).all()
    entries = [
        LiveEntry(
            queue_id=e.queue_id,
            call_sid=e.call_sid,
            priority=e.priority,
            arrival_ms=int(e.enqueued_at.timestamp() * 1000),
            caller=e.caller or "",
            kind="callback" if e.status == "callback_requested" else "call",
            callback_id=cb,
            position_at_entry=e.position_at_entry or 0,
        )
        for e, cb in rows
        if e.queue_id in live_ids
    ]
    return RoutingData(
        agents=[
            LiveAgent(agent_config(a), a.status, a.state_version, dict(a.live_state or {}))
            for a in agents
        ],
        queues=[queue_routing(q) for q in queues],
        entries=entries,
    )


def make_loader(sessionmaker: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    async def load() -> RoutingData:
        async with sessionmaker() as session:
            return await routing_data(session)

    return load


# --- queue entries -------------------------------------------------------------------------


async def record_enqueued(
    session: AsyncSession,
    *,
    queue_id: int,
    call_sid: str,
    caller: str | None,
    priority: int,
    position: int,
    enqueued_at: datetime,
    status: str = "waiting",
) -> None:
    """One row per call per queue visit (idempotent for a retried activity)."""
    existing = (
        await session.execute(
            select(CallQueueEntry.id).where(
                CallQueueEntry.call_sid == call_sid,
                CallQueueEntry.queue_id == queue_id,
                CallQueueEntry.left_at.is_(None),
            )
        )
    ).first()
    if existing is not None:
        return
    execution_id = (
        await session.execute(select(FlowExecution.id).where(FlowExecution.call_sid == call_sid))
    ).scalar_one_or_none()
    left = enqueued_at if status != "waiting" else None
    session.add(
        CallQueueEntry(
            queue_id=queue_id,
            call_sid=call_sid,
            caller=caller,
            priority=priority,
            status=status,
            position_at_entry=position,
            enqueued_at=enqueued_at,
            execution_id=execution_id,
            left_at=left,
            wait_s=0.0 if left else None,
        )
    )


async def record_left(
    session: AsyncSession,
    *,
    queue_id: int,
    call_sid: str,
    status: str,
    left_at: datetime,
    agent_id: int | None = None,
) -> float | None:
    """Close the open entry of this call in this queue; its wait in seconds (None if none open)."""
    entry = (
        await session.execute(
            select(CallQueueEntry)
            .where(
                CallQueueEntry.call_sid == call_sid,
                CallQueueEntry.queue_id == queue_id,
                CallQueueEntry.left_at.is_(None),
            )
            .order_by(CallQueueEntry.id.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if entry is None:
        return None
    wait = max(0.0, (left_at - entry.enqueued_at).total_seconds())
    entry.status = status
    if status != "callback_requested":
        entry.left_at = left_at
        entry.wait_s = wait
    if agent_id is not None:
        entry.agent_id = agent_id
    return wait


async def record_on_execution(
    session: AsyncSession,
    call_sid: str,
    *,
    agent_id: int | None = None,
    queue_id: int | None = None,
    queue_wait_s: float | None = None,
) -> None:
    values: dict[str, Any] = {}
    if agent_id is not None:
        values["agent_id"] = agent_id
    if queue_id is not None:
        values["queue_id"] = queue_id
    if queue_wait_s is not None:
        values["queue_wait_s"] = queue_wait_s
    if values:
        await session.execute(
            update(FlowExecution).where(FlowExecution.call_sid == call_sid).values(**values)
        )


async def create_queue_callback(
    session: AsyncSession,
    *,
    queue_id: int,
    call_sid: str,
    phone: str,
    position: int,
) -> int:
    """The caller's callback request, keeping its queue place (idempotent per call)."""
    stmt = (
        insert(VoiceCallback)
        .values(
            phone_number=phone,
            status="waiting_in_queue",
            asap=True,
            queue_id=queue_id,
            queue_position=position,
            source_call_sid=call_sid,
            idempotency_key=f"queue:{queue_id}:{call_sid}",
            note="requested while holding in queue",
        )
        .on_conflict_do_nothing(
            index_elements=[VoiceCallback.idempotency_key],
            index_where=VoiceCallback.idempotency_key.is_not(None),
        )
        .returning(VoiceCallback.id)
    )
    new_id = (await session.execute(stmt)).scalar_one_or_none()
    if new_id is not None:
        return int(new_id)
    return int(
        (
            await session.execute(
                select(VoiceCallback.id).where(
                    VoiceCallback.idempotency_key == f"queue:{queue_id}:{call_sid}"
                )
            )
        ).scalar_one()
    )


async def callbacks_reached_agent(
    session: AsyncSession, items: Sequence[tuple[int, int, str, int]], now: datetime
) -> None:
    """(callback id, agent id, call sid, queue id): the request reached the head with an agent
    free, so it becomes due now for the callback dialer (status `scheduled`, asap)."""
    for callback_id, agent_id, call_sid, queue_id in items:
        await session.execute(
            update(VoiceCallback)
            .where(VoiceCallback.id == callback_id, VoiceCallback.status == "waiting_in_queue")
            .values(status="scheduled", agent_id=agent_id, scheduled_at=now, asap=True)
        )
        await record_left(
            session,
            queue_id=queue_id,
            call_sid=call_sid,
            status="called_back",
            left_at=now,
            agent_id=agent_id,
        )


# --- statistics ----------------------------------------------------------------------------


async def entry_history(
    session: AsyncSession, queue_id: int, *, offset: int, limit: int, status: str | None = None
) -> tuple[list[CallQueueEntry], int]:
    cond = [CallQueueEntry.queue_id == queue_id]
    if status is not None:
        cond.append(CallQueueEntry.status == status)
    total = (
        await session.execute(select(func.count()).select_from(CallQueueEntry).where(*cond))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(CallQueueEntry)
                .where(*cond)
                .order_by(CallQueueEntry.enqueued_at.desc(), CallQueueEntry.id.desc())
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return list(rows), int(total)


async def window_stats(
    session: AsyncSession, queue_id: int, *, since: datetime, service_level_s: float
) -> dict[str, Any]:
    """Counts over entries that left the queue since `since` (offered = every such entry)."""
    e = CallQueueEntry
    answered_in_sl = func.count().filter(and_(e.status == "assigned", e.wait_s <= service_level_s))
    row = (
        await session.execute(
            select(
                func.count().label("offered"),
                func.count().filter(e.status == "assigned").label("answered"),
                answered_in_sl.label("answered_in_sl"),
                func.count().filter(e.status == "abandoned").label("abandoned"),
                func.count().filter(e.status == "timed_out").label("timed_out"),
                func.count().filter(e.status == "overflowed").label("overflowed"),
                func.count()
                .filter(e.status.in_(("callback_requested", "called_back")))
                .label("callbacks"),
                func.avg(e.wait_s).label("avg_wait_s"),
                func.max(e.wait_s).label("max_wait_s"),
            ).where(e.queue_id == queue_id, e.enqueued_at >= since)
        )
    ).one()
    arrivals = (
        await session.execute(
            select(func.count())
            .select_from(e)
            .where(e.queue_id == queue_id, e.enqueued_at >= datetime.now(UTC) - timedelta(hours=1))
        )
    ).scalar_one()
    return {**row._asdict(), "arrivals_last_hour": int(arrivals)}
