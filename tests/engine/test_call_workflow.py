"""CallWorkflow against a real Temporal dev server, a real worker and the real database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from core.calls import CallOutcome, CallStart, CallState
from core.db.models import FlowExecution, NodeExecution
from core.telephony import CallEvent, Dialect, EventKind, Reply

MENU_FLOW: dict[str, Any] = {
    "name": "Engine test menu",
    "nodes": [
        {"id": "welcome", "type": "welcome", "name": "Welcome",
         "config": {"message": "Welcome to Acme, caller {{ caller }}."}},
        {"id": "menu", "type": "menu", "name": "Main menu",
         "config": {"message": "Press 1 for billing, 2 to leave a message.",
                    "options": [{"digit": "1", "label": "Billing"},
                                {"digit": "2", "label": "Voicemail"}],
                    "timeout": 5, "maxRetries": 2,
                    "invalidMessage": "That is not a valid choice.",
                    "timeoutMessage": "We did not hear a choice."}},
        {"id": "billing", "type": "play", "name": "Billing info",
         "config": {"message": "Billing is closed today."}},
        {"id": "vm", "type": "record", "name": "Voicemail",
         "config": {"message": "Leave a message after the beep.", "maxLength": 60}},
        {"id": "bye", "type": "hangup", "name": "Bye",
         "config": {"message": "Goodbye.", "reason": "completed"}},
        {"id": "fail", "type": "hangup", "name": "Too many tries",
         "config": {"message": "Sorry, we could not understand.", "reason": "max_retries"}},
    ],
    "connections": [
        {"fromNode": "welcome", "toNode": "menu", "port": "next"},
        {"fromNode": "menu", "toNode": "billing", "port": "1"},
        {"fromNode": "menu", "toNode": "vm", "port": "2"},
        {"fromNode": "menu", "toNode": "fail", "port": "maxRetries"},
        {"fromNode": "billing", "toNode": "bye", "port": "next"},
        {"fromNode": "vm", "toNode": "bye", "port": "next"},
    ],
}


class Call:
    """Drives one call's workflow the way the API gateway does, without HTTP."""

    def __init__(self, client: Client, task_queue: str, *, dialect: Dialect = Dialect.xml,
                 flow: dict[str, Any] | None = None, grace_s: float = 20.0) -> None:
        self.client = client
        self.task_queue = task_queue
        self.sid = f"T{uuid.uuid4().hex[:16]}"
        self.start = CallStart(
            call_sid=self.sid, dialect=dialect, carrier="test", caller="+919876543210",
            called="+911234567890", flow_id=None, flow_version=1,
            definition=flow or MENU_FLOW, grace_s=grace_s,
        )
        self.handle = client.get_workflow_handle(f"call-{self.sid}", result_type=CallOutcome)
        self.n = 0

    def event(self, kind: EventKind = EventKind.resumed, **kw: Any) -> CallEvent:
        return CallEvent(kind=kind, call_sid=self.sid, carrier="test", **kw)

    async def first(self, result_type: type[Reply] = Reply) -> Reply:
        op = WithStartWorkflowOperation(
            "CallWorkflow", self.start, id=f"call-{self.sid}", task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        return await self.client.execute_update_with_start_workflow(
            "advance", self.event(EventKind.started, caller="+919876543210"),
            start_workflow_operation=op, id=f"{self.sid}:0", result_type=result_type,
        )

    async def send(self, event: CallEvent, update_id: str | None = None) -> Reply:
        self.n += 1
        return await self.handle.execute_update(
            "advance", event, id=update_id or f"{self.sid}:{self.n}", result_type=Reply
        )

    async def outcome(self) -> CallOutcome:
        return await self.handle.result()

    async def state(self) -> CallState:
        return await self.handle.query("state", result_type=CallState)


def texts(reply: Reply) -> list[str]:
    out: list[str] = []
    for item in reply.instructions:
        if item.kind == "say":
            out.append(item.text)
        for p in getattr(item, "prompt", []):
            if p.kind == "say":
                out.append(p.text)
    return out


async def test_menu_choice_walks_to_hangup_and_records_everything(call_worker, sessionmaker):
    client, tq = call_worker
    call = Call(client, tq)
    first = await call.first()
    assert [i.kind for i in first.instructions] == ["say", "gather"]
    assert texts(first)[0] == "Welcome to Acme, caller +919876543210."
    assert first.terminal.kind == "gather"

    second = await call.send(call.event(EventKind.digits, digits="1"))
    assert texts(second) == ["Billing is closed today.", "Goodbye."]
    assert second.final and second.instructions[-1].kind == "hangup"

    outcome = await call.outcome()
    assert outcome.status == "completed"
    assert outcome.path == ["welcome", "menu", "billing", "bye"]

    async with sessionmaker() as session:
        row = await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == call.sid))
        assert row is not None and row.status == "completed" and row.ended_at is not None
        assert row.path == ["welcome", "menu", "billing", "bye"]
        visits = (await session.scalars(
            select(NodeExecution).where(NodeExecution.execution_id == row.id)
            .order_by(NodeExecution.seq)
        )).all()
        assert [(v.node_key, v.port) for v in visits] == [
            ("welcome", "next"), ("menu", "1"), ("billing", "next"), ("bye", None)
        ]
        assert visits[1].data["digits"] == "1"


async def test_exotel_dialect_hands_out_one_applet_per_turn(call_worker):
    client, tq = call_worker
    call = Call(client, tq, dialect=Dialect.exotel)
    first = await call.first()
    # Welcome text merges into the menu's gather prompt: a single Programmable Gather.
    assert [i.kind for i in first.instructions] == ["gather"]
    assert texts(first)[:2] == ["Welcome to Acme, caller +919876543210.",
                                "Press 1 for billing, 2 to leave a message."]
    second = await call.send(call.event(EventKind.digits, digits="1"))
    assert [i.kind for i in second.instructions] == ["say", "say"]
    # The hang-up applet rides along for the API to hand out on the carrier's next return:
    # for the workflow the turn is the call's last, so it ends without another update.
    assert [[i.kind for i in piece] for piece in second.then] == [["hangup"]]
    assert second.final and second.awaiting.kind == "hangup"
    assert second.expected_duration_s > 0
    assert (await call.outcome()).status == "completed"
    assert (await call.state()).turn == 2


AUDIO_BEFORE_MENU: dict[str, Any] = {
    "name": "Audio before a menu",
    "entryNode": "intro",
    "nodes": [
        {"id": "intro", "type": "play", "name": "Intro",
         "config": {"audioUrl": "https://cdn.example.com/intro.mp3"}},
        {"id": "menu", "type": "menu", "name": "Menu",
         "config": {"message": "Press 1 to finish.", "options": [{"digit": "1"}],
                    "timeout": 5, "maxRetries": 2}},
        {"id": "bye", "type": "hangup", "name": "Bye", "config": {"message": "Bye."}},
    ],
    "connections": [
        {"fromNode": "intro", "toNode": "menu", "port": "next"},
        {"fromNode": "menu", "toNode": "bye", "port": "1"},
    ],
}


async def test_pieces_the_api_served_are_skipped_and_the_next_event_answers_the_last(
    call_worker,
):
    """Audio cannot merge into Exotel's gather prompt: Greeting first, then the gather, which
    the API hands out itself; the workflow then reads the key press as the menu's answer."""
    client, tq = call_worker
    call = Call(client, tq, dialect=Dialect.exotel, flow=AUDIO_BEFORE_MENU)
    first = await call.first()
    assert [i.kind for i in first.instructions] == ["play"]
    assert [[i.kind for i in piece] for piece in first.then] == [["gather"]]
    assert first.awaiting.kind == "gather" and not first.final
    # The carrier came back from the greeting (API served the gather), then pressed 1.
    done = await call.send(call.event(EventKind.digits, digits="1", served=1))
    assert [i.kind for i in done.instructions] == ["say"] and done.final
    assert [[i.kind for i in piece] for piece in done.then] == [["hangup"]]
    outcome = await call.outcome()
    assert outcome.path == ["intro", "menu", "bye"] and outcome.turns == 2


async def test_pieces_the_api_lost_are_handed_out_by_the_workflow(call_worker):
    """If the API lost the pieces (Redis emptied), the workflow hands out the rest itself, even
    when the carrier repeats earlier parameters that look like key presses (Exotel repeats
    `digits` on later Passthrus: after prompts it only means 'back')."""
    client, tq = call_worker
    call = Call(client, tq, dialect=Dialect.exotel, flow=AUDIO_BEFORE_MENU)
    await call.first()
    rest = await call.send(call.event(EventKind.digits, digits="1"))  # served=0: stale digits
    assert [i.kind for i in rest.instructions] == ["gather"] and rest.then == []
    done = await call.send(call.event(EventKind.digits, digits="1"))
    assert done.final
    assert (await call.outcome()).path == ["intro", "menu", "bye"]


async def test_invalid_then_timeout_then_max_retries_port(call_worker):
    client, tq = call_worker
    call = Call(client, tq)
    await call.first()
    r1 = await call.send(call.event(EventKind.digits, digits="7"))
    assert texts(r1)[0] == "That is not a valid choice." and r1.terminal.kind == "gather"
    r2 = await call.send(call.event(EventKind.digits, digits=""))
    assert texts(r2) == ["Sorry, we could not understand."]
    assert r2.final
    outcome = await call.outcome()
    assert outcome.path[-1] == "fail" and outcome.reason == "max_retries"


async def test_timeout_prompt_uses_its_own_message(call_worker):
    client, tq = call_worker
    call = Call(client, tq)
    await call.first()
    r1 = await call.send(call.event(EventKind.digits, digits=""))
    assert texts(r1)[0] == "We did not hear a choice."
    await call.handle.signal("end", call.event(EventKind.ended, call_status="completed"))
    outcome = await call.outcome()
    assert outcome.status == "abandoned" and outcome.reason == "caller_hung_up"


async def test_same_update_id_advances_once(call_worker):
    client, tq = call_worker
    call = Call(client, tq)
    await call.first()
    again = await call.first()  # the carrier retried the first webhook
    assert (await call.state()).turn == 1
    assert again.turn == 1
    event = call.event(EventKind.digits, digits="2")
    a = await call.send(event, update_id=f"{call.sid}:digits")
    b = await call.send(event, update_id=f"{call.sid}:digits")
    assert a == b and a.terminal.kind == "record"
    assert (await call.state()).turn == 2


async def test_record_saves_recording_url(call_worker, sessionmaker):
    client, tq = call_worker
    call = Call(client, tq)
    await call.first()
    await call.send(call.event(EventKind.digits, digits="2"))
    url = "https://recordings.example.test/abc.wav"
    bye = await call.send(call.event(EventKind.recording, recording_url=url))
    assert bye.final
    outcome = await call.outcome()
    assert outcome.recording_url == url
    async with sessionmaker() as session:
        row = await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == call.sid))
        assert row.recording_url == url


async def test_silent_caller_is_abandoned_after_grace(call_worker, sessionmaker):
    client, tq = call_worker
    call = Call(client, tq, grace_s=0.5)
    first = await call.first()
    assert first.terminal.kind == "gather"
    # Nobody comes back: the gather's expected duration plus grace passes.
    outcome = await asyncio.wait_for(call.outcome(), timeout=60)
    assert outcome.status == "abandoned" and outcome.reason == "no_webhook"
    async with sessionmaker() as session:
        row = await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == call.sid))
        assert row.status == "abandoned"


async def test_updates_after_the_end_are_refused(call_worker):
    client, tq = call_worker
    call = Call(client, tq)
    await call.first()
    await call.handle.signal("end", call.event(EventKind.ended, call_status="completed"))
    await call.outcome()
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await call.send(call.event(EventKind.digits, digits="1"))


async def test_unconnected_port_ends_politely(call_worker):
    client, tq = call_worker
    flow = {
        "name": "Dead end",
        "nodes": [
            {"id": "welcome", "type": "welcome", "name": "Hi", "config": {"message": "Hi."}},
            {"id": "info", "type": "play", "name": "Info", "config": {"message": "Info."}},
        ],
        "connections": [{"fromNode": "welcome", "toNode": "info", "port": "next"}],
    }
    call = Call(client, tq, flow=flow)
    first = await call.first()
    assert texts(first) == ["Hi.", "Info.", "Thank you for calling. Goodbye."]
    assert first.final
    assert (await call.outcome()).reason == "end_of_flow"


async def test_gather_answered_without_digits_param_counts_as_timeout(call_worker):
    client, tq = call_worker
    call = Call(client, tq)
    await call.first()
    retry = await call.send(call.event(EventKind.resumed))
    assert texts(retry)[0] == "We did not hear a choice."


async def test_silent_call_still_live_at_the_carrier_is_kept_then_ended(
    call_worker, fake_exotel
):
    client, tq = call_worker
    fake, _ = fake_exotel
    call = Call(client, tq, dialect=Dialect.exotel, grace_s=0.5)
    call.start = call.start.model_copy(update={"carrier": "exotel"})
    fake.statuses[call.sid] = ["in-progress", "completed"]
    await call.first()
    outcome = await asyncio.wait_for(call.outcome(), timeout=90)
    # First silence: Exotel says the call is up, so the workflow waited another period.
    assert fake.requests.count(call.sid) == 2
    assert outcome.status == "abandoned" and outcome.reason == "no_webhook"
    assert outcome.turns == 1


async def test_carrier_throttling_is_retried_and_unknown_call_ends(call_worker, fake_exotel):
    client, tq = call_worker
    fake, _ = fake_exotel
    call = Call(client, tq, dialect=Dialect.exotel, grace_s=0.5)
    call.start = call.start.model_copy(update={"carrier": "exotel"})
    fake.throttle_next = 1  # one 429, then a 404 for this unknown call
    await call.first()
    outcome = await asyncio.wait_for(call.outcome(), timeout=90)
    assert outcome.status == "abandoned"
    assert fake.requests.count(call.sid) == 2
