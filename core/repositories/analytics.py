"""SQL of the analytics API. Every value is a bound parameter; each query is shaped to use an
index of flow_executions / call_queue_entries (tests/analytics/test_explain.py checks the
history and dashboard ones on a million rows).

Definitions of the figures: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Select,
    and_,
    cast,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.analytics import ENDED_STATUSES
from core.db.models import (
    Agent,
    AuditLog,
    CallQueueEntry,
    Flow,
    FlowExecution,
    NodeExecution,
    Queue,
)

E = FlowExecution
Q = CallQueueEntry

# Queue entries that count as offered to agents: they left the queue by being answered or
# by giving up. A caller who took a callback instead is not counted (they chose not to wait).
OFFERED_STATUSES = ("assigned", "abandoned", "timed_out", "overflowed")
# A caller who hangs up within this many seconds of joining a queue is a short abandon: not
# counted against the service level (the industry's usual 5 s).
SHORT_ABANDON_S = 5.0


def _ended() -> Any:
    return E.status.in_(ENDED_STATUSES)


# --- call outcome figures (dashboard, metrics) -------------------------------------------------


async def call_figures(
    session: AsyncSession, start: datetime, end: datetime | None = None
) -> dict[str, Any]:
    """Calls started in [start, end): counts by status and average duration of ended calls."""
    cond = [E.started_at >= start]
    if end is not None:
        cond.append(E.started_at < end)
    row = (
        await session.execute(
            select(
                func.count().label("calls"),
                func.count().filter(E.status == "completed").label("completed"),
                func.count().filter(E.status == "abandoned").label("abandoned"),
                func.count().filter(E.status == "failed").label("failed"),
                func.count().filter(E.status == "in_progress").label("in_progress"),
                func.avg(E.duration_s).filter(_ended()).label("avg_duration_s"),
            ).where(*cond)
        )
    ).one()
    return row._asdict()


async def active_calls(session: AsyncSession) -> int:
    """Calls whose record says in progress (the partial index ix_flow_executions_active)."""
    return int(
        await session.scalar(select(func.count()).select_from(E).where(E.status == "in_progress"))
        or 0
    )


async def top_flows(
    session: AsyncSession, start: datetime, end: datetime | None = None, limit: int = 5
) -> list[dict[str, Any]]:
    cond = [E.started_at >= start]
    if end is not None:
        cond.append(E.started_at < end)
    counts = (
        select(E.flow_id, func.count().label("n"))
        .where(*cond)
        .group_by(E.flow_id)
        .order_by(func.count().desc(), E.flow_id)
        .limit(limit)
        .subquery()
    )
    rows = await session.execute(
        select(counts.c.flow_id, Flow.name, counts.c.n)
        .select_from(counts)
        .outerjoin(Flow, Flow.id == counts.c.flow_id)
        .order_by(counts.c.n.desc(), counts.c.flow_id)
    )
    return [
        {"flow_id": flow_id, "flow_name": name or "(deleted flow)", "call_count": int(n)}
        for flow_id, name, n in rows
    ]


def _queue_ids_subquery() -> Any:
    # Per queue, so the (queue_id, enqueued_at) index serves every queue's range scan.
    return select(Queue.id).scalar_subquery()


async def queue_figures(
    session: AsyncSession, start: datetime, end: datetime | None = None
) -> dict[str, Any]:
    """Service level, abandonment and speed of answer over queue entries that joined a queue
    in [start, end) and have left it."""
    in_sl = and_(Q.status == "assigned", Q.wait_s <= Queue.service_level_s)
    short_abandon = and_(Q.status == "abandoned", Q.wait_s < SHORT_ABANDON_S)
    cond = [
        Q.queue_id.in_(_queue_ids_subquery()),
        Q.enqueued_at >= start,
        Q.status.in_(OFFERED_STATUSES),
    ]
    if end is not None:
        cond.append(Q.enqueued_at < end)
    row = (
        await session.execute(
            select(
                func.count().label("offered"),
                func.count().filter(Q.status == "assigned").label("answered"),
                func.count().filter(in_sl).label("answered_in_sl"),
                func.count().filter(Q.status == "abandoned").label("abandoned"),
                func.count().filter(short_abandon).label("short_abandoned"),
                func.avg(Q.wait_s).filter(Q.status == "assigned").label("asa_s"),
                func.max(Q.wait_s).label("max_wait_s"),
            )
            .select_from(Q)
            .join(Queue, Queue.id == Q.queue_id)
            .where(*cond)
        )
    ).one()
    return row._asdict()


async def metric_series(
    session: AsyncSession, start: datetime, end: datetime, interval: str, tz: str
) -> list[dict[str, Any]]:
    """Calls per bucket (local hour or day in `tz`)."""
    bucket = func.date_trunc(interval, func.timezone(tz, E.started_at)).label("bucket")
    rows = await session.execute(
        select(
            bucket,
            func.count().label("calls"),
            func.count().filter(E.status == "completed").label("completed"),
            func.count().filter(E.status == "failed").label("failed"),
            func.count().filter(E.status == "abandoned").label("abandoned"),
            func.count().filter(E.status == "in_progress").label("in_progress"),
            func.avg(E.duration_s).filter(_ended()).label("avg_duration_s"),
        )
        .where(E.started_at >= start, E.started_at < end)
        .group_by(bucket)
    )
    return [r._asdict() for r in rows]


async def queue_series(
    session: AsyncSession, start: datetime, end: datetime, interval: str, tz: str
) -> list[dict[str, Any]]:
    bucket = func.date_trunc(interval, func.timezone(tz, Q.enqueued_at)).label("bucket")
    in_sl = and_(Q.status == "assigned", Q.wait_s <= Queue.service_level_s)
    short_abandon = and_(Q.status == "abandoned", Q.wait_s < SHORT_ABANDON_S)
    rows = await session.execute(
        select(
            bucket,
            func.count().label("offered"),
            func.count().filter(in_sl).label("answered_in_sl"),
            func.count().filter(short_abandon).label("short_abandoned"),
        )
        .select_from(Q)
        .join(Queue, Queue.id == Q.queue_id)
        .where(
            Q.queue_id.in_(_queue_ids_subquery()),
            Q.enqueued_at >= start,
            Q.enqueued_at < end,
            Q.status.in_(OFFERED_STATUSES),
        )
        .group_by(bucket)
    )
    return [r._asdict() for r in rows]


# --- history and export ------------------------------------------------------------------------


def history_select(
    *,
    start: datetime | None,
    end: datetime | None,
    flow_id: int | None,
    status: str | None,
    caller: str | None,
) -> Select[Any]:
    """Executions newest first with their flow and agent names (keyset order: started_at, id)."""
    stmt = (
        select(
            E.id,
            E.call_sid,
            E.flow_id,
            Flow.name.label("flow_name"),
            E.flow_version,
            E.carrier,
            E.direction,
            E.caller,
            E.called,
            E.status,
            E.end_reason,
            E.started_at,
            E.ended_at,
            E.duration_s,
            E.path,
            E.agent_id,
            Agent.name.label("agent_name"),
            E.queue_id,
            Queue.name.label("queue_name"),
            E.queue_wait_s,
            E.recording_url,
        )
        .outerjoin(Flow, Flow.id == E.flow_id)
        .outerjoin(Agent, Agent.id == E.agent_id)
        .outerjoin(Queue, Queue.id == E.queue_id)
        .order_by(E.started_at.desc(), E.id.desc())
    )
    if start is not None:
        stmt = stmt.where(E.started_at >= start)
    if end is not None:
        stmt = stmt.where(E.started_at < end)
    if flow_id is not None:
        stmt = stmt.where(E.flow_id == flow_id)
    if status is not None:
        stmt = stmt.where(E.status == status)
    if caller is not None:
        stmt = stmt.where(E.caller == caller)
    return stmt


async def history_page(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Any]:
    if after is not None:
        stmt = stmt.where(tuple_(E.started_at, E.id) < tuple_(after[0], after[1]))
    return list((await session.execute(stmt.limit(limit + 1))).all())


async def stream_rows(
    session: AsyncSession, stmt: Select[Any], chunk: int = 2000
) -> AsyncIterator[Sequence[Any]]:
    """The rows of `stmt` in chunks through a server-side cursor (constant memory)."""
    result = await session.stream(stmt.execution_options(yield_per=chunk))
    async for part in result.partitions(chunk):
        yield part


# --- flows -------------------------------------------------------------------------------------


async def flow_exists(session: AsyncSession, flow_id: int) -> str | None:
    return await session.scalar(select(Flow.name).where(Flow.id == flow_id))


def _flow_cond(flow_id: int, start: datetime, end: datetime) -> list[Any]:
    return [E.flow_id == flow_id, E.started_at >= start, E.started_at < end]


async def flow_figures(
    session: AsyncSession, flow_id: int, start: datetime, end: datetime
) -> dict[str, Any]:
    row = (
        await session.execute(
            select(
                func.count().label("total"),
                func.count().filter(E.status == "completed").label("completed"),
                func.count().filter(E.status == "failed").label("failed"),
                func.count().filter(E.status == "abandoned").label("abandoned"),
                func.count().filter(E.status == "in_progress").label("in_progress"),
                func.avg(E.duration_s).filter(_ended()).label("avg_duration_s"),
            ).where(*_flow_cond(flow_id, start, end))
        )
    ).one()
    return row._asdict()


async def node_visits(
    session: AsyncSession, flow_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per node: visits, distinct calls that reached it."""
    n = NodeExecution
    rows = await session.execute(
        select(
            n.node_key,
            n.node_type,
            func.max(n.node_name).label("node_name"),
            func.count().label("visits"),
            func.count(func.distinct(n.execution_id)).label("calls"),
        )
        .join(E, E.id == n.execution_id)
        .where(*_flow_cond(flow_id, start, end))
        .group_by(n.node_key, n.node_type)
        .order_by(func.count().desc(), n.node_key)
    )
    return [r._asdict() for r in rows]


async def drop_offs(
    session: AsyncSession, flow_id: int, start: datetime, end: datetime
) -> dict[str, int]:
    """Abandoned calls by the node they were at when the caller hung up (last in their path)."""
    last = E.path.op("->>")(literal_column("-1")).label("node_key")
    rows = await session.execute(
        select(last, func.count())
        .where(*_flow_cond(flow_id, start, end), E.status == "abandoned")
        .group_by(last)
    )
    return {key: int(count) for key, count in rows if key is not None}


async def menu_choices(
    session: AsyncSession, flow_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Menu visits by how they left: the digit pressed (its port), a timeout/invalid port, or
    none (the caller hung up at the menu)."""
    n = NodeExecution
    choice = func.coalesce(n.port, "(hung up)").label("choice")
    rows = await session.execute(
        select(n.node_key, func.max(n.node_name).label("node_name"), choice, func.count())
        .join(E, E.id == n.execution_id)
        .where(*_flow_cond(flow_id, start, end), n.node_type == "menu")
        .group_by(n.node_key, choice)
        .order_by(n.node_key, choice)
    )
    return [
        {"node_key": k, "node_name": name, "choice": c, "count": int(cnt)}
        for k, name, c, cnt in rows
    ]


# --- agents ------------------------------------------------------------------------------------


async def agents(session: AsyncSession) -> list[Agent]:
    return list(
        (
            await session.execute(
                select(Agent).where(Agent.deleted_at.is_(None)).order_by(Agent.id)
            )
        ).scalars()
    )


async def handled_by_agent(
    session: AsyncSession, start: datetime, end: datetime
) -> dict[int, int]:
    rows = await session.execute(
        select(E.agent_id, func.count())
        .where(E.agent_id.is_not(None), E.started_at >= start, E.started_at < end)
        .group_by(E.agent_id)
    )
    return {int(a): int(c) for a, c in rows}


async def transfer_attempts(
    session: AsyncSession, start: datetime, end: datetime
) -> dict[int, dict[str, Any]]:
    """Per agent, from transfer-node visits of calls started in the range: answered dials and
    their talk time, and dials the agent did not answer (no-answer, busy, failed)."""
    n = NodeExecution
    agent = cast(n.data.op("->>")("agentId"), Float)
    dial = n.data.op("->>")("dialStatus")
    talk = cast(n.data.op("->>")("durationS"), Float)
    rows = await session.execute(
        select(
            agent.label("agent_id"),
            func.count().filter(dial == "completed").label("answered"),
            func.coalesce(func.sum(talk).filter(dial == "completed"), 0.0).label("talk_s"),
            func.count()
            .filter(or_(dial.in_(("no-answer", "busy", "failed", "canceled"))))
            .label("missed"),
        )
        .join(E, E.id == n.execution_id)
        .where(
            E.started_at >= start,
            E.started_at < end,
            n.node_type == "transfer",
            n.data.op("?")("agentId"),
            n.data.op("?")("dialStatus"),
        )
        .group_by(agent)
    )
    return {
        int(r.agent_id): {"answered": int(r.answered), "talk_s": float(r.talk_s),
                          "missed": int(r.missed)}
        for r in rows
        if r.agent_id is not None
    }


async def status_changes(
    session: AsyncSession, end: datetime
) -> list[tuple[str, datetime, str | None]]:
    """Agent presence changes (agent id, when, new status) from the audit log, oldest first."""
    rows = await session.execute(
        select(AuditLog.entity_id, AuditLog.occurred_at, AuditLog.after.op("->>")("status"))
        .where(
            AuditLog.action == "agent.status",
            AuditLog.entity_type == "agent",
            AuditLog.occurred_at < end,
        )
        .order_by(AuditLog.occurred_at, AuditLog.id)
    )
    return [(str(a), t, s) for a, t, s in rows]


def staffed_seconds(
    changes: list[tuple[datetime, str | None]],
    start: datetime,
    end: datetime,
    *,
    initial: str = "offline",
) -> float:
    """Seconds in [start, end) the agent was signed in as available (on a call and in wrap-up
    count: the presence stays available), from their status changes oldest first."""
    status = initial
    cursor = start
    total = 0.0
    for at, new in changes:
        if at <= start:
            status = new or status
            continue
        if at >= end:
            break
        if status == "available":
            total += (at - cursor).total_seconds()
        cursor, status = at, new or status
    if status == "available":
        total += (end - cursor).total_seconds()
    return max(0.0, total)

