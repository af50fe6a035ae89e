"""Test doubles for the carrier adapters: a scripted CallGateway and the live server handle.

The gateway fake behaves like the workflow where the adapters can tell: it segments per
dialect and hands queued pieces out on `resumed`, returns the same reply for a repeated
update id, raises UnknownCall / CallOver, and records every call it gets. Its flow is a tiny
demo menu (1 sales -> dial, 2 voicemail, 3 hold), enough to drive every applet and verb.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from api.carriers import include_carrier_routers
from api.carriers.gateway import CallOver, UnknownCall
from core.config import Settings
from core.telephony import (
    CallEvent,
    Dial,
    Dialect,
    DialStatus,
    EventKind,
    Gather,
    Hangup,
    Hold,
    Instruction,
    Pause,
    Play,
    Record,
    Reply,
    Say,
    as_answer_to,
    expected_duration_s,
    segment,
)

WEBHOOK_TOKEN = "carrier-test-token-0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
JINGLE = "https://cdn.example.com/jingle.wav"
MENU = Gather(
    prompt=[Say(text="Press 1 for sales, 2 to leave a message, 3 to hold.")],
    max_digits=1,
    timeout_s=5,
)
SALES = Dial(
    numbers=["+919000000001", "+919000000002"],
    caller_id="+911234567890",
    ring_timeout_s=20,
    time_limit_s=600,
    record=True,
    announce="Sales call from the IVR",
)
VOICEMAIL = Record(prompt=[Say(text="Leave a message after the beep.")], max_length_s=60)


@dataclass
class Advance:
    event: CallEvent
    update_id: str
    dialect: Dialect
    start: bool


@dataclass
class FakeCall:
    sid: str
    dialect: Dialect
    stage: str = "start"
    misses: int = 0
    turn: int = 0
    done: bool = False
    pending: Reply | None = None
    queued: list[list[Instruction]] = field(default_factory=list)
    replies: dict[str, Reply] = field(default_factory=dict)


def demo_flow(call: FakeCall, event: CallEvent) -> list[Instruction]:
    """Welcome, a menu, and what each key leads to."""
    if call.stage == "start":
        call.stage = "menu"
        return [Play(url=JINGLE, duration_s=2), Say(text="Welcome to the demo line."), MENU]
    if call.stage == "menu":
        if event.kind != EventKind.digits:
            return [MENU]
        if event.digits == "1":
            call.stage = "dial"
            return [Say(text="Connecting you to sales."), SALES]
        if event.digits == "2":
            call.stage = "voicemail"
            return [VOICEMAIL]
        if event.digits == "3":
            call.stage = "hold"
            return [Hold(duration_s=5, announcements=[Say(text="Please hold.")])]
        if event.digits == "":
            call.misses += 1
            if call.misses >= 2:
                return [Say(text="Goodbye."), Hangup(reason="no_input")]
            return [Say(text="We did not get that."), MENU]
        return [Say(text="That is not an option."), MENU]
    if call.stage == "dial":
        if event.dial_status == DialStatus.completed:
            return [Say(text="Thank you for calling."), Hangup()]
        call.stage = "voicemail"
        return [Say(text="Nobody is free."), VOICEMAIL]
    if call.stage == "voicemail":
        return [Say(text="Thanks for your message."), Hangup(reason="voicemail")]
    if call.stage == "hold":
        return [Pause(seconds=1), Say(text="Still there? Goodbye."), Hangup()]
    return [Hangup(reason="unexpected")]


class ScriptedGateway:
    """A CallGateway that runs `demo_flow` in memory and records everything."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, FakeCall] = {}
        self.advances: list[Advance] = []
        self.ends: list[CallEvent] = []
        self.pending_asked: list[str] = []
        self.explode: Exception | None = None  # raised by advance, to test the 503 path

    def advances_for(self, sid: str) -> list[Advance]:
        return [a for a in self.advances if a.event.call_sid == sid]

    def seed(self, sid: str, instructions: list[Instruction], dialect: Dialect) -> None:
        """Make `sid` a running call whose pending reply is exactly `instructions`."""
        call = FakeCall(sid, dialect, stage="seeded")
        call.pending = Reply(instructions=instructions, turn=1)
        self.calls[sid] = call

    async def advance(
        self, event: CallEvent, *, update_id: str, dialect: Dialect, start: bool
    ) -> Reply:
        call = self.calls.get(event.call_sid)
        if call is not None:
            # As the workflow does: the event answers what the carrier last played (Exotel
            # repeats the last keys on later requests, so the adapter's kind is a hint).
            event = as_answer_to(call.pending, event)
        self.advances.append(Advance(event, update_id, dialect, start))
        if self.explode is not None:
            raise self.explode
        call = self.calls.get(event.call_sid)
        if call is None:
            if not start:
                raise UnknownCall(event.call_sid)
            call = self.calls[event.call_sid] = FakeCall(event.call_sid, dialect)
        if update_id in call.replies:
            return call.replies[update_id]
        if call.done:
            raise CallOver(event.call_sid)
        call.turn += 1
        if call.queued and event.kind == EventKind.resumed:
            piece = call.queued.pop(0)
        else:
            # As the workflow does: the event answers what the carrier last played.
            pieces = segment(demo_flow(call, event), dialect)
            piece, call.queued = pieces[0], pieces[1:]
        final = any(item.kind == "hangup" for item in piece)
        reply = Reply(
            instructions=piece,
            expected_duration_s=expected_duration_s(piece),
            turn=call.turn,
            final=final,
        )
        call.pending = call.replies[update_id] = reply
        call.done = final
        return reply

    async def pending(self, call_sid: str) -> Reply | None:
        self.pending_asked.append(call_sid)
        call = self.calls.get(call_sid)
        if call is None:
            raise UnknownCall(call_sid)
        return call.pending

    async def end(self, event: CallEvent) -> None:
        self.ends.append(event)
        call = self.calls.get(event.call_sid)
        if call is None:
            raise UnknownCall(event.call_sid)
        call.done = True


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def build_app(settings: Settings) -> FastAPI:
    """The real app when its factory exists (middleware, error handlers), else a bare one."""
    try:
        from api.main import create_app
        from api.routes import ROUTERS
    except ImportError:
        app = FastAPI()
        app.state.settings = settings
        include_carrier_routers(app)
        return app
    app = create_app(settings)
    if not any(spec.startswith("api.carriers") for spec in ROUTERS):
        include_carrier_routers(app)
    return app


@dataclass
class LiveServer:
    app: FastAPI
    base_url: str
    gateway: ScriptedGateway
    default_settings: Settings

    @contextlib.contextmanager
    def settings(self, **changes: Any) -> Iterator[Settings]:
        """Serve with these settings changed, for one block."""
        changed = self.default_settings.model_copy(update=changes)
        self.app.state.settings = changed
        try:
            yield changed
        finally:
            self.app.state.settings = self.default_settings
