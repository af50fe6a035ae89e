"""The call's start record, written by the API that starts the call's workflow.

A call's `flow_executions` row and its live `call:started` event used to come from an activity
the workflow scheduled on its first turn: an activity task and one more workflow task per call
on the Temporal server, at the moment the caller waits for their first prompt. The API knows
everything the row needs when update-with-start returns, so it writes the row and announces the
call itself, after the reply, without holding the webhook. The workflow still carries the same
start record on every write of its own (node-visit batches, the final record): the insert is
idempotent, so whichever lands first makes the row, and an API that died before writing loses
nothing but the early announcement.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import events
from core.calls import CallStart, CallStartedRecord
from core.repositories import executions
from core.temporal import call_workflow_id

log = structlog.get_logger(__name__)


class StartRecorder:
    """Writes a started call's row and publishes `call:started` (both idempotent)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        publisher: events.EventPublisher | None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.publisher = publisher

    async def __call__(self, start: CallStart, at: datetime) -> None:
        record = CallStartedRecord.of(
            start, workflow_id=call_workflow_id(start.call_sid), started_at=at
        )
        try:
            async with self.sessionmaker.begin() as session:
                await executions.record_started(session, record)
        except Exception:  # the workflow's own writes carry the same record
            log.warning("call_start_not_recorded", call_sid=start.call_sid, exc_info=True)
            return
        if self.publisher is not None:
            await events.announce_call_started(
                self.publisher, call_sid=start.call_sid, flow_id=start.flow_id,
                flow_name=start.flow_name, caller=start.caller, at=at,
            )


__all__ = ["StartRecorder"]
