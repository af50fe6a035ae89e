"""Callbacks: the CallbackWorkflow's inputs, outputs, signals and the pure rules it follows.

Shared by the API, the worker and the routing engine, so none of them imports workflow code.
A callback dials `phone_number` back in one of three ways (`CallbackMode`): into a flow (the
customer is rung first and put into the Exotel app), through a given agent (the agent is rung
first, then bridged to the customer), or through a queue (it waits, keeping its place, until
the routing engine reserves an agent for it, then dials agent-first like `agent`).

The queue contract (see `AgentReserved`; activities/callback_queue.py implements it against the
routing engine's `core.routing.callbacks` hand-off): a queue callback waits as a `callback`
entry in its queue; when it reaches the head and an agent is reserved for it, the workflow
`callback-{id}` gets the `agent_reserved` signal (signal-with-start, so a request the queue's
offer recorded gets its workflow then). Before dialling, the workflow runs the signal's
`hold_activity` (keeps the agent for the call); afterwards its `release_activity` with a
`QueueDialDone`. A failed attempt goes back into the queue for a new agent.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field

from core.telephony import Wire

CALLBACK_WORKFLOW = "CallbackWorkflow"
CANCEL_SIGNAL = "cancel"
CARRIER_STATUS_SIGNAL = "carrier_status"
AGENT_RESERVED_SIGNAL = "agent_reserved"
RESCHEDULE_UPDATE = "reschedule"
STATUS_QUERY = "status"

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "exhausted"})
MAX_ATTEMPTS_LIMIT = 10
MAX_RETRY_DELAY_S = 24 * 3600
# How far ahead a callback may be scheduled.
MAX_SCHEDULE_AHEAD = timedelta(days=90)
# Exotel's terminal call statuses and what each means for an attempt.
ANSWERED = "answered"
ATTEMPT_OUTCOMES = ("answered", "no-answer", "busy", "failed", "canceled", "no-call")
_EXOTEL_OUTCOME = {
    "completed": ANSWERED,
    "answered": ANSWERED,
    "no-answer": "no-answer",
    "noanswer": "no-answer",
    "busy": "busy",
    "failed": "failed",
    "canceled": "canceled",
    "cancelled": "canceled",
}
LIVE_CALL_STATUSES = frozenset({"queued", "ringing", "in-progress", "initiated"})
_CUSTOM_FIELD_RE = re.compile(r"^cb:(\d{1,18}):(\d{1,3})$")


class CallbackMode(StrEnum):
    flow = "flow"
    agent = "agent"
    queue = "queue"


def custom_field(callback_id: int, attempt: int) -> str:
    """What rides in Exotel's `CustomField`: which callback and which attempt a call is."""
    return f"cb:{callback_id}:{attempt}"


def parse_custom_field(value: str | None) -> tuple[int, int] | None:
    """(callback id, attempt) from a `CustomField`, or None for anything else."""
    if not value:
        return None
    match = _CUSTOM_FIELD_RE.match(value.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def attempt_outcome(exotel_status: str | None) -> str | None:
    """The outcome of an attempt from Exotel's status; None while the call is still up."""
    if not exotel_status:
        return None
    status = exotel_status.strip().lower()
    if status in LIVE_CALL_STATUSES:
        return None
    return _EXOTEL_OUTCOME.get(status, "failed")


def retry_delay_s(base_s: int, backoff: float, attempt_done: int) -> float:
    """Wait after attempt `attempt_done` (1-based) failed: base, then times `backoff` each."""
    return float(min(MAX_RETRY_DELAY_S, base_s * backoff ** max(0, attempt_done - 1)))


# --- workflow input, state, outcome ------------------------------------------------------


class CallbackStart(Wire):
    callback_id: int
    phone_number: str  # E.164
    mode: CallbackMode
    flow_id: int | None = None
    agent_id: int | None = None
    queue_id: int | None = None
    queue_position: int | None = None
    source_call_sid: str | None = None
    scheduled_at: datetime | None = None  # None: as soon as possible
    max_attempts: int = 3
    retry_delay_s: int = 300
    backoff: float = 2.0
    business_hours_id: int | None = None
    send_sms: bool = False
    note: str | None = None
    # How long a dial may ring (per leg) and last, and how late a status callback may come,
    # before the workflow asks Exotel what became of the call.
    ring_timeout_s: int = 30
    time_limit_s: int = 1800
    status_grace_s: int = 120


class AttemptRecord(Wire):
    number: int
    custom_field: str
    status: str  # dialing, then one of ATTEMPT_OUTCOMES
    started_at: datetime
    ended_at: datetime | None = None
    call_sid: str | None = None
    agent_id: int | None = None
    duration_s: float | None = None
    reason: str | None = None


class CallbackState(Wire):
    """What the `status` query answers."""

    callback_id: int
    status: str
    mode: CallbackMode
    next_attempt_at: datetime | None
    attempts: list[AttemptRecord]
    max_attempts: int
    cancel_requested: bool = False
    last_error: str | None = None
    agent_id: int | None = None


class CallbackOutcome(Wire):
    callback_id: int
    status: str  # completed | exhausted | failed | cancelled
    attempts: int
    reason: str


class RescheduleRequest(Wire):
    scheduled_at: datetime | None = None
    asap: bool = False
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)


# --- signals -----------------------------------------------------------------------------


class CarrierCallStatus(Wire):
    """A status callback for a callback's call, routed by its CustomField."""

    custom_field: str
    call_sid: str | None = None
    status: str
    duration_s: float | None = None
    conversation_duration_s: float | None = None
    recording_url: str | None = None


class AgentReserved(Wire):
    """Routing engine → callback workflow: this queue callback is at the head and `agent_id`
    is reserved for it. `agent_number` overrides the agent's phone_number from the table;
    `release_activity` (optional) is run with a `QueueDialDone` once the dial is over."""

    agent_id: int
    agent_number: str | None = None
    reservation_id: str | None = None
    release_activity: str | None = None
    # Run (with a QueueHold) before dialling to keep the agent for the ring and talk time;
    # False back means the reservation lapsed: the request goes back to its queue.
    hold_activity: str | None = None


class QueueHold(Wire):
    reservation_id: str | None
    agent_id: int
    seconds: float


class QueueEnqueue(Wire):
    """Put (or keep) a queue callback in its queue as a `callback` entry (idempotent)."""

    callback_id: int
    queue_id: int
    entry_id: str  # the queue entry's id: the source call's sid, or callback-{id}
    phone_number: str


class QueuePlace(Wire):
    known_queue: bool
    position: int | None = None
    size: int | None = None


class QueueDialDone(Wire):
    callback_id: int
    queue_id: int | None
    agent_id: int
    reservation_id: str | None
    attempt: int
    outcome: str  # an attempt outcome, or "cancelled"


# --- activity inputs and outputs ---------------------------------------------------------


class CallbackRecord(Wire):
    """One write to voice_callbacks (and one published event)."""

    callback_id: int
    status: str
    event: str  # scheduled, rescheduled, waiting_in_queue, dialing, attempt, completed, ...
    attempt: AttemptRecord | None = None
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    finished: bool = False
    agent_id: int | None = None
    max_attempts: int | None = None


class DialRequest(Wire):
    callback_id: int
    attempt: int
    custom_field: str
    mode: CallbackMode
    customer: str
    agent_id: int | None = None
    agent_number: str | None = None


class DialResult(Wire):
    """`placed` (call_sid known), `refused` (Exotel said no: nothing placed), or `unknown`
    (an earlier try may have placed the call: wait for its status, then reconcile)."""

    outcome: str
    call_sid: str | None = None
    error: str | None = None
    retry_sensible: bool = True
    first_number: str | None = None  # the number rung first (where to look the call up)


class ReconcileRequest(Wire):
    callback_id: int
    custom_field: str
    call_sid: str | None = None
    mode: CallbackMode
    customer: str
    first_number: str | None = None
    since: datetime


class ReconcileResult(Wire):
    found: bool
    live: bool = False
    call_sid: str | None = None
    status: str | None = None
    duration_s: float | None = None
    error: str | None = None


class BusinessHoursQuery(Wire):
    business_hours_id: int
    at: datetime


class BusinessHoursAnswer(Wire):
    open: bool
    next_open_at: datetime | None = None
    reason: str | None = None
    checked: bool = True  # False: no business-hours engine to ask; treated as open


class SmsRequest(Wire):
    """An SMS of a kind (core.sms.SMS_KINDS): the kind's text from settings, or `template`
    (a flow node's), rendered with `variables` (`at`, an ISO time, also gives `time`)."""

    to: str
    kind: str
    variables: dict[str, str] = Field(default_factory=dict)
    callback_id: int | None = None
    # Exotel's CustomField on the SMS; also what makes a retried send find the first one.
    custom_field: str | None = None
    template: str | None = None
    dlt_template_id: str | None = None
    call_sid: str | None = None  # the call whose outcome this SMS follows


class SmsResult(Wire):
    sent: bool
    sid: str | None = None
    status: str | None = None
    error: str | None = None


class QueueCallbackRequest(Wire):
    """The queue's callback offer: the caller pressed 1 to be called back, keeping `position`."""

    call_sid: str
    phone_number: str
    queue_id: int
    queue_position: int | None = None
    note: str | None = None
    max_attempts: int = 3
    retry_delay_s: int = 300


class CallbackRef(Wire):
    callback_id: int
    workflow_id: str
    created: bool
