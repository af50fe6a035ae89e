"""The raw Temporal limit: a workflow that answers one update per caller turn and nothing else.

No HTTP, no database, no activities, no search attributes: whatever `ivr loadtest` measures
above this, per turn, is what the platform adds (webhook parsing, flow walking, Redis, the
writes a real call starts). Plain dataclasses and the default converter keep it minimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

BASELINE_WORKFLOW = "BaselineCall"
ADVANCE_UPDATE = "advance"
# A run that dies leaves no workflow behind for long.
EXECUTION_TIMEOUT = timedelta(minutes=15)


@dataclass
class BaselineStart:
    call_id: str


@dataclass
class Turn:
    n: int
    last: bool = False


@dataclass
class TurnReply:
    n: int
    text: str


@dataclass
class BaselineOutcome:
    call_id: str
    turns: int


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineCall:
    """One simulated call: each update is a caller turn; the `last` turn ends it."""

    @workflow.init
    def __init__(self, start: BaselineStart) -> None:
        self.call_id = start.call_id
        self.turns = 0
        self.done = False

    @workflow.run
    async def run(self, start: BaselineStart) -> BaselineOutcome:
        # all_handlers_finished: the last update's reply is sent before the workflow completes.
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return BaselineOutcome(call_id=self.call_id, turns=self.turns)

    @workflow.update(name=ADVANCE_UPDATE)
    async def advance(self, turn: Turn) -> TurnReply:
        self.turns += 1
        if turn.last:
            self.done = True
        return TurnReply(n=turn.n, text=f"prompt {turn.n}")
