"""SQL for call records: flow_executions and node_executions. Every write is idempotent,
because activities retry."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.calls import CallFinalRecord, CallStartedRecord, NodeVisit, VisitsRecord
from core.db.models import FlowExecution, NodeExecution


class ExecutionMissing(LookupError):
    """A node visit arrived before its call's start record (writes run concurrently)."""


async def record_started(session: AsyncSession, rec: CallStartedRecord) -> int:
    stmt = (
        insert(FlowExecution)
        .values(
            call_sid=rec.call_sid,
            workflow_id=rec.workflow_id,
            flow_id=rec.flow_id,
            flow_version=rec.flow_version,
            carrier=rec.carrier,
            direction=rec.direction,
            caller=rec.caller,
            called=rec.called,
            started_at=rec.started_at,
            status="in_progress",
        )
        .on_conflict_do_nothing(index_elements=[FlowExecution.call_sid])
        .returning(FlowExecution.id)
    )
    new_id = (await session.execute(stmt)).scalar_one_or_none()
    if new_id is not None:
        return new_id
    return await _execution_id(session, rec.call_sid)


async def _execution_id(session: AsyncSession, call_sid: str) -> int:
    found = await session.scalar(select(FlowExecution.id).where(FlowExecution.call_sid == call_sid))
    if found is None:
        raise ExecutionMissing(call_sid)
    return found


async def record_visits(session: AsyncSession, rec: VisitsRecord) -> None:
    """Upsert node visits. Writes may arrive out of order (retries), so a closed visit is never
    reopened and the path never shrinks."""
    if rec.started is not None:
        execution_id = await record_started(session, rec.started)
    else:
        execution_id = await _execution_id(session, rec.call_sid)
    await _upsert_visits(session, execution_id, rec.visits)
    await session.execute(
        update(FlowExecution)
        .where(
            FlowExecution.id == execution_id,
            FlowExecution.ended_at.is_(None),
            func.jsonb_array_length(FlowExecution.path) <= len(rec.path),
        )
        .values(current_node_key=rec.current_node, path=rec.path)
    )


async def _upsert_visits(session: AsyncSession, execution_id: int, visits: list[NodeVisit]) -> None:
    """Upsert a batch of visits in one statement; a closed visit is never reopened."""
    if not visits:
        return
    # One statement for the whole batch: a round trip and a compile per write, not per visit.
    stmt = insert(NodeExecution).values(
        [
            {
                "execution_id": execution_id,
                "seq": visit.seq,
                "node_key": visit.node_id,
                "node_type": visit.node_type,
                "node_name": visit.node_name,
                "entered_at": visit.entered_at,
                "exited_at": visit.exited_at,
                "port": visit.port,
                "data": visit.data,
            }
            for visit in visits
        ]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[NodeExecution.execution_id, NodeExecution.seq],
        set_={
            "exited_at": stmt.excluded.exited_at,
            "port": stmt.excluded.port,
            "data": stmt.excluded.data,
        },
        where=NodeExecution.exited_at.is_(None),
    )
    await session.execute(stmt)


async def finalize(session: AsyncSession, rec: CallFinalRecord) -> bool:
    """Write the call's end; returns False if it was already written (exactly once)."""
    if rec.started is not None:
        execution_id = await record_started(session, rec.started)
    else:
        execution_id = await _execution_id(session, rec.call_sid)
    await _upsert_visits(session, execution_id, rec.visits)
    result = await session.execute(
        update(FlowExecution)
        .where(FlowExecution.call_sid == rec.call_sid, FlowExecution.ended_at.is_(None))
        .values(
            status=rec.status,
            end_reason=rec.reason,
            ended_at=rec.ended_at,
            duration_s=rec.duration_s,
            path=rec.path,
            variables=rec.variables,
            recording_url=rec.recording_url,
            current_node_key=None,
        )
        .returning(FlowExecution.id)
    )
    if result.scalar_one_or_none() is not None:
        return True
    await _execution_id(session, rec.call_sid)  # raises (and so retries) if the start is missing
    return False


async def count_active(session: AsyncSession) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(FlowExecution)
            .where(FlowExecution.status == "in_progress")
        )
        or 0
    )
