"""Provider-neutral call control: what the workflow asks the carrier to do, and what comes back.

The workflow speaks only these types; carrier adapters (api/carriers/*) parse webhooks into
`CallEvent`s and render `Reply`s in their dialect. Everything here is pure and deterministic,
so workflows may import it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# How long the carrier may take to come back after an instruction finishes before we conclude
# the caller has gone (Exotel sends nothing when an inbound caller hangs up).
DEFAULT_GRACE_S = 20.0
# Rough text-to-speech pace used to estimate how long a prompt plays.
TTS_CHARS_PER_S = 14.0


class Wire(BaseModel):
    """Base for every model here: camelCase on the wire, snake_case in Python, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


# --- instructions --------------------------------------------------------------------------


class Say(Wire):
    kind: Literal["say"] = "say"
    text: str
    voice: str | None = None
    language: str = "en-IN"
    loop: int = Field(default=1, ge=1, le=10)


class Play(Wire):
    kind: Literal["play"] = "play"
    url: str
    loop: int = Field(default=1, ge=1, le=10)
    # Length of the audio when known; used to expect the caller back.
    duration_s: float | None = None


Prompt = Annotated[Say | Play, Field(discriminator="kind")]


class Gather(Wire):
    kind: Literal["gather"] = "gather"
    prompt: list[Prompt] = Field(default_factory=list)
    max_digits: int = Field(default=1, ge=1, le=32)
    min_digits: int = Field(default=1, ge=0, le=32)
    finish_on_key: str = "#"
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Spoken once more if the caller presses nothing (Exotel's repeat_gather_prompt).
    repeat_prompt: bool = False
    # What the caller types here must not reach the workflow: the API seals it in the call
    # vault (core.flows.vault) and forwards a reference (`CallEvent.sealed`).
    sensitive: bool = False


class Dial(Wire):
    kind: Literal["dial"] = "dial"
    numbers: list[str]
    caller_id: str | None = None
    ring_timeout_s: int = Field(default=30, ge=5, le=120)
    time_limit_s: int = Field(default=3600, ge=10, le=14400)
    record: bool = False
    music_on_hold_url: str | None = None
    announce: str | None = None  # whispered to the agent before bridging, where supported
    agent_id: int | None = None  # who is being dialled, for the workflow's own bookkeeping


class Record(Wire):
    kind: Literal["record"] = "record"
    prompt: list[Prompt] = Field(default_factory=list)
    max_length_s: int = Field(default=120, ge=1, le=3600)
    finish_on_key: str = "#"
    play_beep: bool = True


class Hold(Wire):
    """Keep the caller waiting for a segment, with music and/or announcements, then come back."""

    kind: Literal["hold"] = "hold"
    duration_s: float = Field(default=15.0, gt=0, le=120)
    music_url: str | None = None
    announcements: list[Prompt] = Field(default_factory=list)


class Pause(Wire):
    kind: Literal["pause"] = "pause"
    seconds: float = Field(default=1.0, gt=0, le=30)


class Hangup(Wire):
    kind: Literal["hangup"] = "hangup"
    reason: str = "completed"


Instruction = Annotated[
    Say | Play | Gather | Dial | Record | Hold | Pause | Hangup, Field(discriminator="kind")
]

# Instructions after which the carrier must come back to us with a result.
TERMINAL_KINDS = frozenset({"gather", "dial", "record", "hold", "hangup"})


class Dialect(StrEnum):
    exotel = "exotel"  # one applet per Passthru turn
    xml = "xml"  # TwiML / ExoML <Response>: a sequence of verbs, ending at the first terminal
    sim = "sim"  # the JSON simulator; same rules as xml


class Reply(Wire):
    """What one webhook turn answers: a segment of instructions in order.

    `then` holds the further segments of the same turn when the dialect carries one applet per
    webhook (Exotel): the API hands them out itself on the carrier's data-less returns, from
    Redis, without a workflow update, and tells the workflow how many it served (`CallEvent.
    served`) with the next event it does forward. Only the last segment may wait for an answer.
    """

    instructions: list[Instruction]
    # How long the instructions (and the segments in `then`) take to run before the carrier
    # should be back with an answer; the workflow waits this plus a grace period before
    # deciding the caller is gone.
    expected_duration_s: float = 0.0
    turn: int = 0
    final: bool = False  # the call ends after this reply (and its `then` segments)
    # A holding reply the API gave because the workflow missed the webhook budget.
    fallback: bool = False
    then: list[list[Instruction]] = Field(default_factory=list)

    @property
    def terminal(self) -> Instruction | None:
        """The terminal instruction of this segment (None for prompts only)."""
        return _terminal(self.instructions)

    @property
    def awaiting(self) -> Instruction | None:
        """What the carrier's next forwarded event answers: the last segment's terminal."""
        return _terminal(self.then[-1] if self.then else self.instructions)

    def pieces(self) -> list[Reply]:
        """Every segment as a Reply of its own, in the order the carrier gets them: each
        with its own duration and whether it hangs up."""
        if not self.then:
            return [self]
        return [
            self.model_copy(
                update={
                    "instructions": segment,
                    "then": [],
                    "expected_duration_s": expected_duration_s(segment),
                    "final": any(item.kind == "hangup" for item in segment),
                }
            )
            for segment in (self.instructions, *self.then)
        ]

def _terminal(instructions: list[Instruction]) -> Instruction | None:
    last = instructions[-1] if instructions else None
    return last if last is not None and last.kind in TERMINAL_KINDS else None


def prompt_duration_s(item: Say | Play | Pause) -> float:
    """Best estimate of how long a prompt plays."""
    if isinstance(item, Say):
        return max(1.0, len(item.text) / TTS_CHARS_PER_S) * item.loop
    if isinstance(item, Play):
        return (item.duration_s if item.duration_s is not None else 30.0) * item.loop
    return item.seconds


def expected_duration_s(instructions: list[Instruction]) -> float:
    """How long a segment keeps the caller busy before the carrier comes back to us."""
    total = 0.0
    for item in instructions:
        if isinstance(item, Say | Play | Pause):
            total += prompt_duration_s(item)
        elif isinstance(item, Gather):
            total += sum(prompt_duration_s(p) for p in item.prompt) + item.timeout_s
            if item.repeat_prompt:
                total *= 2
        elif isinstance(item, Dial):
            total += item.ring_timeout_s + item.time_limit_s
        elif isinstance(item, Record):
            total += sum(prompt_duration_s(p) for p in item.prompt) + item.max_length_s
        elif isinstance(item, Hold):
            total += item.duration_s
    return total


def segment(instructions: list[Instruction], dialect: Dialect) -> list[list[Instruction]]:
    """Split a run of instructions into the pieces one webhook turn can carry in `dialect`.

    XML-like dialects take everything up to and including the first terminal instruction.
    Exotel runs one applet per Passthru turn: a run of prompts is one Greeting; a Gather
    absorbs the prompts before it when they are all text (or a single audio file); a Dial,
    Record, Hold or Hangup stands alone after its prompts.
    """
    pieces: list[list[Instruction]] = []
    current: list[Instruction] = []
    for item in instructions:
        if dialect != Dialect.exotel:
            current.append(item)
            if item.kind in TERMINAL_KINDS:
                pieces.append(current)
                current = []
            continue
        if item.kind in ("say", "play", "pause"):
            current.append(item)
            continue
        if isinstance(item, Gather) and current and _mergeable_into_gather(current, item):
            merged = item.model_copy(update={"prompt": [*current, *item.prompt]})
            pieces.append([merged])
        else:
            if current:
                pieces.append(current)
            pieces.append([item])
        current = []
    if current:
        pieces.append(current)
    return pieces


def _mergeable_into_gather(prompts: list[Instruction], gather: Gather) -> bool:
    items = [*prompts, *gather.prompt]
    if all(isinstance(p, Say) for p in items):
        return True
    return len(items) == 1 and isinstance(items[0], Play)


# --- events --------------------------------------------------------------------------------


class EventKind(StrEnum):
    started = "started"  # the first webhook of a call
    resumed = "resumed"  # the carrier came back with nothing new (prompt played, hold done)
    digits = "digits"  # keys pressed (empty string: nothing pressed before the timeout)
    dial_result = "dial_result"
    recording = "recording"
    ended = "ended"  # the caller or carrier ended the call


class DialStatus(StrEnum):
    completed = "completed"
    busy = "busy"
    no_answer = "no-answer"
    failed = "failed"
    canceled = "canceled"


class SealedDigits(Wire):
    """Keys typed into a sensitive gather, kept in the call vault: a reference, the mask."""

    ref: str = Field(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$")
    masked: str = Field(max_length=64)


class CallEvent(Wire):
    """One carrier webhook, parsed and validated, independent of the carrier."""

    kind: EventKind
    call_sid: str = Field(min_length=1, max_length=64)
    carrier: str = "exotel"
    caller: str | None = None  # E.164
    called: str | None = None  # E.164
    direction: str = "inbound"
    digits: str | None = None
    # Instead of `digits` when they answer a sensitive gather (set by the API, never by a
    # carrier): the workflow reads the value only through an activity.
    sealed: SealedDigits | None = None
    dial_status: DialStatus | None = None
    dial_number: str | None = None
    dial_duration_s: float | None = None
    recording_url: str | None = None
    call_status: str | None = None
    custom_field: str | None = None
    # Set by the adapter when the previous reply never reached the carrier (budget fallback):
    # the workflow answers the stored reply again instead of advancing.
    redeliver: bool = False
    # How many `Reply.then` segments of the last reply the API handed out itself before
    # forwarding this event (0: none, or the API lost track and the workflow hands them out).
    served: int = Field(default=0, ge=0, le=1000)
    received_at_ms: int | None = None


def as_answer_to(pending: Reply | None, event: CallEvent) -> CallEvent:
    """Read `event` as the answer to `pending`, the reply the carrier last played.

    Carriers may repeat earlier parameters (Exotel's `digits`, `DialCallStatus`) on later
    requests, so the kind an adapter guessed from the parameters is only a hint: after
    prompts the carrier is just back, after a gather it brings keys (none = timeout).
    """
    if pending is None or event.kind in (EventKind.started, EventKind.ended):
        return event
    awaiting = pending.awaiting
    waiting = awaiting.kind if awaiting is not None else None
    update: dict[str, object]
    if waiting == "gather":
        kind, update = EventKind.digits, {"digits": event.digits or ""}
    elif waiting == "dial":
        kind, update = EventKind.dial_result, {}
    elif waiting == "record":
        kind, update = EventKind.recording, {}
    else:
        kind, update = EventKind.resumed, {}
    if kind == event.kind and not update:
        return event
    return event.model_copy(update={"kind": kind, **update})
