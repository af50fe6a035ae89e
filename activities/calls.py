"""Activities of CallWorkflow: the call's records in PostgreSQL."""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.calls import CallFinalRecord, VisitsRecord
from core.repositories import executions

log = structlog.get_logger(__name__)


class CallActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    @activity.defn(name="record_node_visits")
    async def record_node_visits(self, rec: VisitsRecord) -> None:
        async with self.sessionmaker.begin() as session:
            await executions.record_visits(session, rec)

    @activity.defn(name="finalize_call")
    async def finalize_call(self, rec: CallFinalRecord) -> bool:
        async with self.sessionmaker.begin() as session:
            written = await executions.finalize(session, rec)
        log.info("call_finalized", call_sid=rec.call_sid, status=rec.status, reason=rec.reason,
                 first_write=written)
        return written

    def all(self) -> list:
        return [self.record_node_visits, self.finalize_call]
