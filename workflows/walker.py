"""Walking a flow graph for one carrier turn: the part of a call that is pure graph logic.

`FlowWalker` enters and resumes nodes through their handlers (workflows.nodes.HANDLERS),
follows ports, keeps the node visits, and stops at the first node that waits for the carrier
or at a hang-up. It touches no Temporal API itself: the clock and the activities come from
the context it is given. That is what lets the same code walk a turn in two places: inside
CallWorkflow (workflows.call), and in the API (api/opening.py), which hands the result to the
workflow as `CallStart.opening` (a first turn) or by the `walked` signal (a later one).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.exceptions import ApplicationError

from core.calls import MAX_STEPS_PER_TURN, CallStart, NodeVisit
from core.telephony import CallEvent, Hangup, Instruction, Reply, Say, expected_duration_s
from workflows.nodes import GOODBYE, HANDLERS, Context, Step


@dataclass
class Walked:
    """A turn's outcome: what to say, and whether the call ends after it."""

    emitted: list[Instruction]
    hangup_reason: str | None = None  # None: the call waits at `FlowWalker.node_id`


class FlowWalker:
    def __init__(self, flow: Any, ctx: Context, clock: Callable[[], datetime]) -> None:
        self.flow = flow
        self.ctx = ctx
        self.clock = clock
        self.node_id: str | None = None  # the node waiting for the carrier
        self.visits: list[NodeVisit] = []
        self.unsent_visits: dict[int, NodeVisit] = {}

    async def walk(self, event: CallEvent) -> Walked:
        """One turn: from the entry node (first turn) or the waiting node's answer onwards."""
        emitted: list[Instruction] = []
        if self.node_id is None:
            node_id: str | None = self.flow.entry().id
            step = await self._enter(node_id)
        else:
            node_id = self.node_id
            node = self.flow.node(node_id)
            step = await _settle(HANDLERS[node.type].resume(self.ctx, node, event))
            self._note(step)
        for _ in range(MAX_STEPS_PER_TURN):
            emitted.extend(step.emit)
            if step.hangup_reason is not None:
                return self._hang_up(emitted, step.hangup_reason)
            if step.wait:
                self.node_id = node_id
                return Walked(emitted)
            next_id = self.flow.next(node_id, step.port) if step.port is not None else None
            self.close_visit(self.visits[-1], port=step.port, at=self.clock())
            if next_id is None:
                # An unconnected port: end politely rather than leave the caller in silence.
                emitted.extend([Say(text=GOODBYE), Hangup(reason="end_of_flow")])
                return self._hang_up(emitted, "end_of_flow")
            node_id = next_id
            step = await self._enter(node_id)
        raise ApplicationError(f"more than {MAX_STEPS_PER_TURN} nodes in one turn")

    def _hang_up(self, emitted: list[Instruction], reason: str) -> Walked:
        self.node_id = self.visits[-1].node_id if self.visits else None
        return Walked(emitted, reason)

    async def _enter(self, node_id: str) -> Step:
        node = self.flow.node(node_id)
        self.ctx.node_state = {}
        visit = NodeVisit(
            seq=len(self.visits),
            node_id=node.id,
            node_type=node.type,
            node_name=node.name,
            entered_at=self.clock(),
        )
        self.visits.append(visit)
        self.unsent_visits[visit.seq] = visit
        step = await _settle(HANDLERS[node.type].enter(self.ctx, node))
        self._note(step)
        return step

    def _note(self, step: Step) -> None:
        if step.data and self.visits:
            last = self.visits[-1]
            merged = NodeVisit.model_validate(
                {**last.model_dump(), "data": {**last.data, **step.data}}
            )
            self.visits[-1] = merged
            self.unsent_visits[merged.seq] = merged

    def close_visit(self, visit: NodeVisit, *, port: str | None, at: datetime) -> None:
        closed = visit.model_copy(update={"exited_at": at, "port": port})
        self.visits[visit.seq] = closed
        self.unsent_visits[closed.seq] = closed


def initial_variables(start: CallStart) -> dict[str, Any]:
    """The variables a call starts with (prompts read them as `{{ caller }}` and so on)."""
    return {
        "call_sid": start.call_sid,
        "caller": start.caller or "",
        "called": start.called or "",
        "direction": start.direction,
        "custom_field": start.custom_field or "",
    }


def reply_of(pieces: list[list[Instruction]], turn: int) -> Reply:
    """A turn's reply: its first piece now, the rest in `then` for the API to hand out."""
    pieces = pieces or [[Say(text=GOODBYE)]]
    final = any(isinstance(item, Hangup) for piece in pieces for item in piece)
    return Reply(
        instructions=pieces[0],
        then=pieces[1:],
        expected_duration_s=sum(expected_duration_s(piece) for piece in pieces),
        turn=turn,
        final=final,
    )


async def _settle(step: Step | Awaitable[Step]) -> Step:
    """Handlers may answer at once or after awaiting activities: the walker takes both."""
    return await step if inspect.isawaitable(step) else step
