"""Inputs and outputs of the routing activities (one model each; adding a field is safe).

Shared by the queue/transfer node handlers (workflow side) and activities.routing. Pure.
"""

from __future__ import annotations

from core.telephony import Wire


class ReserveRequest(Wire):
    call_sid: str
    lease: str
    strategy: str = "longest_idle"
    skills: dict[str, int] = {}
    team: str | None = None
    agent_ids: list[int] | None = None
    exclude: list[int] = []
    scope: str | None = None  # round-robin cursor scope (a transfer node)
    lease_s: float = 30.0
    on_call: bool = False  # the dial goes out now: the agent is on the call, not just reserved


class AgentPick(Wire):
    """The agent a reservation got, or nobody (agent_id None)."""

    agent_id: int | None = None
    phone: str | None = None
    name: str | None = None
    lease: str | None = None


class DialLease(Wire):
    """Turn a queue's reservation into the dial's lease (covering ring + talk time)."""

    call_sid: str
    lease: str
    lease_s: float


class ReleaseRequest(Wire):
    call_sid: str
    lease: str
    handled: bool = False  # the agent talked to the caller: wrap-up follows
    agent_id: int | None = None
    queue_id: int | None = None
    handle_s: float | None = None
    queue_wait_s: float | None = None  # recorded on the execution with the agent


class QueueEnter(Wire):
    queue_id: int
    call_sid: str
    caller: str | None = None
    priority: int | None = None


class QueueSettings(Wire):
    """The queue row's caller-facing settings (the node's own config overrides them)."""

    name: str = ""
    max_wait_s: int = 600
    hold_music_url: str | None = None
    hold_message: str | None = None
    announce_interval_s: int = 30
    announce_position: bool = True
    announce_wait_time: bool = True
    callback_enabled: bool = False
    overflow_queue_id: int | None = None
    priority: int = 0  # callers' priority when neither the node nor a variable gives one


class QueueStatus(Wire):
    """Where a call stands in its queue.

    outcome: waiting | assigned (agent_* set; the entry has left the queue) | full |
    unknown_queue | gone (the entry vanished, e.g. Redis was rebuilt without it).
    """

    outcome: str
    queue_id: int
    position: int = 0
    size: int = 0
    ewt_s: float | None = None
    waited_s: float = 0.0
    agent_id: int | None = None
    phone: str | None = None
    lease: str | None = None
    settings: QueueSettings | None = None


class HoldSpec(Wire):
    """How the node renders the caller's next hold segments, for the API to answer polls
    from Redis (core.routing.hold) with the same words while nothing changes."""

    deadline_ms: int
    every_ms: int
    last_announce_ms: int
    segment_s: float
    music_url: str | None = None
    hold_message: str | None = None
    announce_position: bool = True
    announce_wait: bool = True
    offer_callback: bool = False


class QueuePoll(Wire):
    queue_id: int
    call_sid: str
    hold: HoldSpec | None = None


class QueueLeave(Wire):
    queue_id: int
    call_sid: str
    status: str  # abandoned | timed_out | overflowed
    release: bool = True


class QueueCallback(Wire):
    queue_id: int
    call_sid: str
    phone: str


class QueueCallbackResult(Wire):
    callback_id: int | None
    position: int = 0
