"""The call workflow's inputs, outputs and live state: shared by the API, worker and CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from core.telephony import Dialect, Reply, Wire

# Names the API uses to reach the workflow, kept here so the API never imports workflow code.
CALL_WORKFLOW = "CallWorkflow"
ADVANCE_UPDATE = "advance"
END_SIGNAL = "end"
WALKED_SIGNAL = "walked"
STATE_QUERY = "state"

# Ceilings that keep one call from running away (a flow bug, a caller looping a menu).
MAX_STEPS_PER_TURN = 50
MAX_TURNS_PER_CALL = 200


class CallStart(Wire):
    """Everything a call needs to run: the flow is pinned here, so edits never touch it."""

    call_sid: str
    dialect: Dialect = Dialect.exotel
    carrier: str = "exotel"
    direction: str = "inbound"
    caller: str | None = None
    called: str | None = None
    custom_field: str | None = None
    flow_id: int | None = None
    flow_version: int | None = None
    flow_name: str | None = None
    definition: dict[str, Any]
    # sha256 of the published version's canonical JSON: lets workers parse it once.
    definition_checksum: str | None = None
    grace_s: float = 20.0
    # The starter writes the call's start record itself (the API does, core.call_records):
    # the workflow's first turn then schedules no write of its own. False for histories from
    # before, and for starters that do not (tests driving the workflow directly).
    start_recorded: bool = False
    # The first turn, already walked and answered by the API (api/opening.py): the workflow
    # starts from it instead of walking the entry itself. None: the first update walks it.
    opening: Opening | None = None


class NodeVisit(Wire):
    seq: int
    node_id: str
    node_type: str
    node_name: str | None = None
    entered_at: datetime
    exited_at: datetime | None = None
    port: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class WalkedTurn(Wire):
    """A turn the API walked and answered itself (api/opening.py), for the workflow to take
    over: the reply the caller got (under `update_id`, that webhook's update id) and the state
    the walk left. The first turn comes in `CallStart.opening`, a later one by the `walked`
    signal, sent before the caller hears the reply."""

    update_id: str
    reply: Reply
    node_id: str  # the node waiting for the carrier (the last one visited, after a hang-up)
    visits: list[NodeVisit]
    variables: dict[str, Any]
    node_state: dict[str, Any] = Field(default_factory=dict)
    hangup_reason: str | None = None  # the reply hangs up: the call ends after it


class Opening(WalkedTurn):
    """A call's first turn as the API walked it before starting the workflow."""


class CallCursor(Wire):
    """Where a call stands after its last turn, kept in Redis for the API to walk the next
    turn itself: the pinned flow version, the last turn as walked, and the time by which the
    workflow will end the call as silent if no webhook comes (the API never walks past it).
    Written by the API from its own walks and from workflow replies that carry one."""

    flow_id: int | None = None
    flow_version: int | None = None
    definition_checksum: str
    dialect: Dialect
    last: WalkedTurn
    silent_after: datetime


CallStart.model_rebuild()


class TurnReply(Reply):
    """What the `advance` update answers: the turn's reply, and (when the next turn could be
    walked by the API: no action registered for the call's end, no message waiting for its
    handlers) where the call now stands, for the API to keep as the call's cursor. The API
    strips `cursor` before anything reaches Redis's reply cache or a carrier."""

    cursor: CallCursor | None = None

    @classmethod
    def of(cls, reply: Reply, cursor: CallCursor | None) -> TurnReply:
        return cls(**_reply_fields(reply), cursor=cursor)

    def plain(self) -> Reply:
        return Reply(**_reply_fields(self))


def _reply_fields(reply: Reply) -> dict[str, Any]:
    """A reply's own fields, as they are (no dump and re-validation on every turn)."""
    return {name: getattr(reply, name) for name in Reply.model_fields}


def silent_after_s(reply: Reply, grace_s: float) -> float:
    """How long after `reply` went out a call with no webhook counts as silent: the reply's
    expected duration (at least a second) plus the grace period. The workflow ends the call
    then; the API never walks a turn past it."""
    return max(1.0, reply.expected_duration_s) + grace_s


class CallOutcome(Wire):
    call_sid: str
    status: str  # completed | abandoned | failed
    reason: str
    turns: int
    duration_s: float
    path: list[str]
    recording_url: str | None = None


class CallState(Wire):
    """What the `state` query shows: where the call is and what it is waiting for."""

    call_sid: str
    flow_id: int | None
    flow_version: int | None
    status: str
    current_node: str | None
    variables: dict[str, Any]
    pending: Reply | None
    turn: int
    history: list[NodeVisit]
    started_at: datetime
    waiting_since: datetime | None = None


# --- activity inputs (one model each, so adding a field never breaks a running call) ---------


class CallStartedRecord(Wire):
    call_sid: str
    workflow_id: str
    flow_id: int | None
    flow_version: int | None
    carrier: str
    direction: str
    caller: str | None
    called: str | None
    started_at: datetime

    @classmethod
    def of(cls, start: CallStart, *, workflow_id: str, started_at: datetime) -> CallStartedRecord:
        """The start record of the call `start` describes (the workflow's and the API's)."""
        return cls(
            call_sid=start.call_sid,
            workflow_id=workflow_id,
            flow_id=start.flow_id,
            flow_version=start.flow_version,
            carrier=start.carrier,
            direction=start.direction,
            caller=start.caller,
            called=start.called,
            started_at=started_at,
        )


class VisitsRecord(Wire):
    call_sid: str
    # The call's start record rides along on the first write, so visits never race it.
    started: CallStartedRecord | None = None
    visits: list[NodeVisit]
    current_node: str | None
    path: list[str]


class CallFinalRecord(Wire):
    call_sid: str
    started: CallStartedRecord | None = None
    visits: list[NodeVisit] = Field(default_factory=list)  # not yet written, last one closed
    status: str
    reason: str
    ended_at: datetime
    duration_s: float
    path: list[str]
    variables: dict[str, Any]
    recording_url: str | None = None


class CarrierStatusRequest(Wire):
    call_sid: str
    carrier: str


class CarrierStatus(Wire):
    """The carrier's own view of a call; `known` is False without credentials or data."""

    known: bool
    status: str | None = None
    live: bool = False
    duration_s: float | None = None
    error: str | None = None
