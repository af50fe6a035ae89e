"""Activities of CallWorkflow: the call's records in PostgreSQL, and the live events that
follow each write (published after the commit, so an event never shows a call the database
does not have)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core import events
from core.calls import CallFinalRecord, CallStartedRecord, NodeVisit, VisitsRecord
from core.db.models import Flow, FlowExecution
from core.repositories import executions

log = structlog.get_logger(__name__)

_Ids = tuple[int, int | None, str | None]  # execution id, flow id, flow name


class CallActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        publisher: events.EventPublisher | None = None,
    ) -> None:
        """Without a publisher, one is built on first use from REDIS_URL (the worker's
        environment); with neither, calls are recorded and no live events are sent."""
        self.sessionmaker = sessionmaker
        self._publisher = publisher
        self._publisher_resolved = publisher is not None

    @activity.defn(name="record_node_visits")
    async def record_node_visits(self, rec: VisitsRecord) -> None:
        async with self.sessionmaker.begin() as session:
            await executions.record_visits(session, rec)
            ids = await self._ids(session, rec.call_sid) if self.publisher else None
        if ids is not None:
            written = "first_turn" if rec.started is not None else "batch"
            await self._announce_visits(ids, rec.call_sid, rec.visits, rec.started, written)

    @activity.defn(name="finalize_call")
    async def finalize_call(self, rec: CallFinalRecord) -> bool:
        async with self.sessionmaker.begin() as session:
            written = await executions.finalize(session, rec)
            ids = await self._ids(session, rec.call_sid) if self.publisher else None
        log.info("call_finalized", call_sid=rec.call_sid, status=rec.status, reason=rec.reason,
                 first_write=written)
        if ids is not None:
            await self._announce_visits(ids, rec.call_sid, rec.visits, rec.started, "end")
            flow_id = ids[1]
            await self.publisher.publish(  # type: ignore[union-attr]
                "call:completed",
                events.ANALYTICS_ROOM,
                events.call_completed(call_sid=rec.call_sid, flow_id=flow_id, status=rec.status,
                                      duration_s=rec.duration_s),
                at=rec.ended_at,
                once_key=f"completed:{rec.call_sid}",
            )
        return written

    def all(self) -> list:
        return [self.record_node_visits, self.finalize_call]

    # --- live events -------------------------------------------------------------------

    @property
    def publisher(self) -> events.EventPublisher | None:
        if not self._publisher_resolved:
            self._publisher_resolved = True
            self._publisher = _publisher_from_env()
        return self._publisher

    @staticmethod
    async def _ids(session: AsyncSession, call_sid: str) -> _Ids | None:
        """The execution's id, flow id and flow name (one indexed lookup)."""
        row = (
            await session.execute(
                select(FlowExecution.id, FlowExecution.flow_id, Flow.name)
                .outerjoin(Flow, Flow.id == FlowExecution.flow_id)
                .where(FlowExecution.call_sid == call_sid)
            )
        ).first()
        return (int(row[0]), row[1], row[2]) if row is not None else None

    async def _announce_visits(
        self,
        ids: _Ids,
        call_sid: str,
        visits: list[NodeVisit],
        started: CallStartedRecord | None,
        written: str,
    ) -> None:
        publisher = self.publisher
        if publisher is None:
            return
        execution_id, flow_id, flow_name = ids
        if started is not None:
            await events.announce_call_started(
                publisher, call_sid=call_sid, flow_id=started.flow_id, flow_name=flow_name,
                caller=started.caller, at=started.started_at,
            )
        if flow_id is None:
            return
        room = events.flow_room(flow_id)
        # Every visit of the batch in order; a visit re-sent to close it repeats its `seq`,
        # which is how a client tells a repeat from a new visit.
        items: list[tuple[str, str, dict[str, Any], Any]] = [
            (
                "flow:execution",
                room,
                events.flow_execution(execution_id=execution_id, call_sid=call_sid,
                                      node_id=v.node_id, node_name=v.node_name,
                                      node_type=v.node_type, seq=v.seq, written=written),
                v.entered_at,
            )
            for v in sorted(visits, key=lambda v: v.seq)
        ]
        await publisher.publish_many(items)


def _publisher_from_env() -> events.EventPublisher | None:
    try:
        from core.config import get_settings
        from core.redis import make_redis

        url = get_settings().redis_url
    except Exception as exc:  # settings that do not load must not fail the call's records
        log.warning("events_disabled", error=str(exc))
        return None
    if not url:
        log.info("events_disabled", reason="REDIS_URL is not set")
        return None
    return events.EventPublisher(make_redis(url))
