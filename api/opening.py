"""Turns walked and answered by the API itself: a call's first turn before its workflow
starts, and later turns from the call's cursor.

The first webhook of a call is the one a caller waits longest for: answered through the
workflow, it costs an update-with-start, which the Temporal server can only complete once a
worker has picked up the new workflow's first task, created it and run it: under a burst of new
calls that is the slowest turn of all (see bench/RESULTS.md). Yet for most flows the first turn
needs nothing but the flow and the clock: a greeting, a business-hours check, a menu. So the
API walks it itself, with the same walker and node handlers the workflow uses
(workflows.walker), answers the caller at once, and starts the workflow with the walk's result
(`CallStart.opening`): the workflow begins where the walk stopped, as if it had walked it.

Later turns are the same (`walk_later`): a key pressed in a menu, a wrong key, a repeat, a
goodbye need only the flow, the clock and where the call stands, which the API keeps in Redis
after every turn it walks, or gets back with a workflow update's answer (`CallCursor`). The
gateway hands such a walk to the workflow by the `walked` signal before the caller hears it; a
signal returns once the server holds it in the call's history, without waiting for a worker to
pick up a task, which is what an update waits for (and what made later turns the slow tail
under load).

A walk gives up (None: the workflow walks the turn as before) as soon as it would need
anything only the workflow may do: an activity other than the business-hours lookup (API nodes,
queue places, agent reservations), an action registered for the end of the call, or a hang-up
in the first turn (the workflow's end path must run). A schedule that cannot be loaded is a
give-up too, not an "open" guess: the workflow then decides with its own retries.

The handlers are deterministic functions of the flow, the variables, the clock and the
activities' answers, and nothing else (workflows/nodes.py): that is what makes their result
here the same as in the workflow. The API imports that workflow code for this one purpose.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.business_hours import ScheduleBundle, ScheduleRequest
from core.calls import CallCursor, CallStart, Opening, WalkedTurn
from core.flows.schema import FlowDefinition, parse_frozen
from core.repositories import business_hours as hours_repo
from core.telephony import CallEvent, as_answer_to, segment
from workflows.nodes import render
from workflows.walker import FlowWalker, Walked, initial_variables, reply_of

log = structlog.get_logger(__name__)

ScheduleLoader = Callable[[ScheduleRequest], Awaitable[ScheduleBundle]]


class NeedsWorkflow(Exception):
    """The first turn needs something only the workflow may do."""


class _OpeningCtx:
    """The handlers' `Context` (workflows.nodes) for a walk outside the workflow: one clock
    reading for the whole walk (as a workflow activation has), the business-hours lookup as
    the only activity, and nothing registered for the end of the call."""

    def __init__(self, variables: dict[str, Any], at: datetime, schedules: ScheduleLoader):
        self.variables = variables
        self.node_state: dict[str, Any] = {}
        self.inbox: dict[str, Any] = {}
        self._at = at
        self._schedules = schedules

    def render(self, template: str | None) -> str:
        return render(template, self.variables)

    def now(self) -> datetime:
        return self._at

    async def activity(self, name: str, arg: Any, **_: Any) -> Any:
        if name == "load_business_hours" and isinstance(arg, ScheduleRequest):
            return await self._schedules(arg)
        raise NeedsWorkflow(name)

    def on_end(self, key: str, activity: str, arg: Any) -> None:
        raise NeedsWorkflow(f"on_end:{activity}")

    def cancel_on_end(self, key: str) -> None:
        return None


async def walk_opening(
    start: CallStart,
    event: CallEvent,
    update_id: str,
    schedules: ScheduleLoader,
    *,
    at: datetime | None = None,
) -> Opening | None:
    """The first turn of the call `start` describes, or None when the workflow must walk it."""
    ctx = _OpeningCtx(initial_variables(start), at or datetime.now(UTC), schedules)
    try:
        flow = parse_frozen(start.definition, start.definition_checksum)
    except Exception:  # a flow the walker cannot take: the workflow walks (and reports) it
        log.warning("opening_walk_failed", call_sid=start.call_sid, exc_info=True)
        return None
    walker = FlowWalker(flow, ctx, ctx.now)
    walked = await _walk(walker, ctx, event)
    if walked is None or walked.hangup_reason is not None or walker.node_id is None:
        return None  # a hang-up at once: the workflow's end path runs it
    return Opening(
        update_id=update_id,
        reply=reply_of(segment(walked.emitted, start.dialect), turn=1),
        node_id=walker.node_id,
        visits=walker.visits,
        variables=ctx.variables,
        node_state=ctx.node_state,
    )


async def walk_later(
    flow: FlowDefinition,
    cursor: CallCursor,
    event: CallEvent,
    update_id: str,
    schedules: ScheduleLoader,
    *,
    at: datetime | None = None,
) -> WalkedTurn | None:
    """The turn after `cursor.last`, answering `event`, or None when the workflow must walk
    it. The event is read as the answer to the last reply, as the workflow reads it."""
    last = cursor.last
    ctx = _OpeningCtx(dict(last.variables), at or datetime.now(UTC), schedules)
    ctx.node_state = dict(last.node_state)
    walker = FlowWalker(flow, ctx, ctx.now)
    walker.node_id = last.node_id
    walker.visits = list(last.visits)
    walked = await _walk(walker, ctx, as_answer_to(last.reply, event))
    if walked is None or walker.node_id is None:
        return None
    return WalkedTurn(
        update_id=update_id,
        reply=reply_of(segment(walked.emitted, cursor.dialect), turn=last.reply.turn + 1),
        node_id=walker.node_id,
        visits=walker.visits,
        variables=ctx.variables,
        node_state=ctx.node_state,
        hangup_reason=walked.hangup_reason,
    )


async def _walk(walker: FlowWalker, ctx: _OpeningCtx, event: CallEvent) -> Walked | None:
    if event.call_status:  # as the workflow notes every event's carrier status
        ctx.variables["call_status"] = event.call_status
    try:
        return await walker.walk(event)
    except NeedsWorkflow as need:
        log.debug("walk_needs_workflow", call_sid=event.call_sid, needs=str(need))
    except Exception:  # a flow the walker cannot take: the workflow walks (and reports) it
        log.warning("api_walk_failed", call_sid=event.call_sid, exc_info=True)
    return None


def schedule_loader(
    sessionmaker: async_sessionmaker[AsyncSession], clock: datetime | None
) -> ScheduleLoader:
    """Business hours from the database, as the `load_business_hours` activity reads them."""

    async def load(req: ScheduleRequest) -> ScheduleBundle:
        async with sessionmaker() as session:
            return await hours_repo.bundle(session, req, clock=clock)

    return load


__all__ = ["NeedsWorkflow", "schedule_loader", "walk_later", "walk_opening"]
