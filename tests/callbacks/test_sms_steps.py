"""SMS after a call's outcome: a flow node's `sms` step (voicemail, missed call, the queue's
callback offer), its texts and DLT ids, through a real worker on the Temporal dev server and
the fake Exotel over HTTP; plus the pure parts (templates, settings, the flow schema)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cb_support import eventually
from fake_exotel import FakeExotel
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities import callbacks as callbacks_module
from activities.callbacks import CallbackActivities
from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from core import sms
from core.callbacks import SmsRequest, SmsResult
from core.calls import CallOutcome, CallStart
from core.config import Settings
from core.db.models import SmsCallback
from core.flows.schema import FlowDefinition
from core.flows.validate import validate_flow
from core.routing.calls import QueueCallbackResult, QueueSettings, QueueStatus
from core.telephony import CallEvent, Dialect, DialStatus, EventKind, Reply
from core.temporal import with_data_converter
from workflows import WORKFLOWS, sms_steps, workflow_runner
from workflows.routing_nodes import QueueHandler

CALLER = "+919812399001"
NODE_DLT = "1107000000000077"
MISSED_DLT = "1107000000000002"


def _flow(nodes: list[dict[str, Any]], connections: list[dict[str, str]]) -> dict[str, Any]:
    return {"name": "SMS steps", "nodes": [
        {"id": "welcome", "type": "welcome", "config": {"message": "Hello."}}, *nodes],
        "connections": [{"fromNode": "welcome", "toNode": nodes[0]["id"], "port": "next"},
                        *connections]}


VOICEMAIL_FLOW = _flow(
    [{"id": "vm", "type": "record", "config": {
        "message": "Leave a message after the beep.",
        "sms": {"template": "Thanks for your message about {{ topic | default('your call') }}."
                            " Ref {{ call_sid }}.", "dltTemplateId": NODE_DLT}}},
     {"id": "bye", "type": "hangup", "config": {"message": "Goodbye."}}],
    [{"fromNode": "vm", "toNode": "bye", "port": "next"}],
)
TRANSFER_FLOW = _flow(
    [{"id": "agent", "type": "transfer", "config": {
        "phoneNumber": "+919700000099", "maxAttempts": 1, "sms": {}}},
     {"id": "bye", "type": "hangup", "config": {"message": "Goodbye."}}],
    [{"fromNode": "agent", "toNode": "bye", "port": "completed"}],
)


@pytest_asyncio.fixture(scope="module")
async def sms_settings(cb_settings: Settings) -> Settings:
    return cb_settings.model_copy(
        update={"exotel_dlt_template_ids": {"missed_call": MISSED_DLT}}
    )


@pytest_asyncio.fixture(scope="module")
async def call_worker(
    temporal_client: Client, sms_settings: Settings, sessionmaker
) -> AsyncIterator[Client]:
    client = with_data_converter(temporal_client)
    async with httpx.AsyncClient(timeout=5) as http, Worker(
        client,
        task_queue=sms_settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=[
            *CallActivities(sessionmaker).all(),
            *CarrierActivities(sms_settings, http).all(),
            *CallbackActivities(sms_settings, sessionmaker, http).all(),
        ],
        workflow_runner=workflow_runner(),
    ):
        yield client


@pytest.fixture
def fake(fake_exotel: tuple[FakeExotel, str]) -> FakeExotel:
    return fake_exotel[0]


class Call:
    """One call's workflow, driven the way the API gateway drives it (no HTTP)."""

    def __init__(self, client: Client, task_queue: str, flow: dict[str, Any],
                 caller: str | None = CALLER) -> None:
        self.client, self.task_queue = client, task_queue
        self.sid = f"S{uuid.uuid4().hex[:16]}"
        self.start = CallStart(call_sid=self.sid, dialect=Dialect.xml, carrier="test",
                               caller=caller, called="+918047112233", flow_id=None,
                               flow_version=1, definition=flow, grace_s=20.0)
        self.handle = client.get_workflow_handle(f"call-{self.sid}", result_type=CallOutcome)
        self.n = 0

    def event(self, kind: EventKind, **fields: Any) -> CallEvent:
        return CallEvent(kind=kind, call_sid=self.sid, carrier="test", **fields)

    async def first(self) -> Reply:
        op = WithStartWorkflowOperation(
            "CallWorkflow", self.start, id=f"call-{self.sid}", task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        return await self.client.execute_update_with_start_workflow(
            "advance", self.event(EventKind.started), start_workflow_operation=op,
            id=f"{self.sid}:0", result_type=Reply)

    async def send(self, event: CallEvent) -> Reply:
        self.n += 1
        return await self.handle.execute_update("advance", event, id=f"{self.sid}:{self.n}",
                                                result_type=Reply)

    async def sms_workflow_exists(self, kind: str) -> bool:
        marker = sms.marker(kind, call_sid=self.sid)
        assert marker is not None
        try:
            await self.client.get_workflow_handle(sms.workflow_id(marker)).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True


def _sms_to(fake: FakeExotel, call_sid: str) -> list[dict[str, str]]:
    return [s for s in fake.sms if f":{call_sid}:" in s.get("CustomField", "")]


# --- through the worker and the fake Exotel -------------------------------------------------


async def test_voicemail_sms_renders_the_nodes_text_with_its_dlt_template(
    call_worker, sms_settings, fake, sessionmaker
):
    call = Call(call_worker, sms_settings.temporal_task_queue, VOICEMAIL_FLOW)
    first = await call.first()
    assert first.terminal.kind == "record"
    final = await call.send(call.event(EventKind.recording,
                                       recording_url="https://rec.example/vm1.mp3"))
    assert final.final
    outcome = await call.handle.result()
    assert outcome.path == ["welcome", "vm", "bye"]
    [sent] = await eventually(lambda: _sms_to(fake, call.sid))
    assert sent["To"] == CALLER and sent["From"] == "ACMECO"
    assert sent["Body"] == f"Thanks for your message about your call. Ref {call.sid}."
    assert (sent["DltEntityId"], sent["DltTemplateId"]) == ("1101234567890", NODE_DLT)
    assert sent["CustomField"] == f"call:{call.sid}:sms:voicemail"
    assert sent["StatusCallback"].endswith("/sms-status")
    assert await call.sms_workflow_exists("voicemail")

    async def stored() -> SmsCallback | None:
        async with sessionmaker() as session:
            return await session.scalar(select(SmsCallback).where(
                SmsCallback.payload["callSid"].astext == call.sid))

    row = await eventually(stored)
    assert (row.to_number, row.from_number, row.status) == (CALLER, "ACMECO", "queued")
    assert row.payload["kind"] == "voicemail" and row.payload["dltTemplateId"] == NODE_DLT


async def test_missed_call_sms_when_nobody_answers_the_transfer(
    call_worker, sms_settings, fake
):
    call = Call(call_worker, sms_settings.temporal_task_queue, TRANSFER_FLOW)
    first = await call.first()
    assert first.terminal.kind == "dial"
    final = await call.send(call.event(EventKind.dial_result, dial_status=DialStatus.no_answer))
    assert final.final  # noAnswer unconnected: a polite goodbye
    await call.handle.result()
    [sent] = await eventually(lambda: _sms_to(fake, call.sid))
    assert sent["Body"] == sms_settings.sms_missed_call_template  # the server's text
    assert sent["DltTemplateId"] == MISSED_DLT  # EXOTEL_DLT_TEMPLATE_IDS["missed_call"]
    assert sent["CustomField"] == f"call:{call.sid}:sms:missed_call"


async def test_no_sms_once_an_agent_answered(call_worker, sms_settings, fake):
    call = Call(call_worker, sms_settings.temporal_task_queue, TRANSFER_FLOW)
    await call.first()
    final = await call.send(call.event(EventKind.dial_result, dial_status=DialStatus.completed,
                                       dial_duration_s=40))
    assert final.final
    await call.handle.result()
    # End actions run before the call's result: had one been left, it would have started.
    assert not await call.sms_workflow_exists("missed_call")
    assert _sms_to(fake, call.sid) == []


async def test_caller_who_hangs_up_while_ringing_is_a_missed_call(
    call_worker, sms_settings, fake
):
    call = Call(call_worker, sms_settings.temporal_task_queue, TRANSFER_FLOW)
    await call.first()
    await call.handle.signal("end", call.event(EventKind.ended, call_status="completed"))
    await call.handle.result()
    [sent] = await eventually(lambda: _sms_to(fake, call.sid))
    assert sent["CustomField"] == f"call:{call.sid}:sms:missed_call"


async def test_withheld_caller_gets_no_sms_and_the_call_still_ends(
    call_worker, sms_settings, fake
):
    call = Call(call_worker, sms_settings.temporal_task_queue, TRANSFER_FLOW, caller=None)
    await call.first()
    await call.send(call.event(EventKind.dial_result, dial_status=DialStatus.busy))
    outcome = await call.handle.result()
    assert outcome.path == ["welcome", "agent"]
    assert not await call.sms_workflow_exists("missed_call")


class LogRecorder:
    """Stands in for the module's structlog logger (whose configuration other tests cache)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.events.append({"event": event, "level": level, **kw})


async def test_missing_sender_skips_with_a_log_line(sms_settings, sessionmaker, monkeypatch):
    recorder = LogRecorder()
    monkeypatch.setattr(callbacks_module, "log", recorder)
    unset = sms_settings.model_copy(update={"exotel_sms_sender": ""})
    async with httpx.AsyncClient() as http:
        acts = CallbackActivities(unset, sessionmaker, http)
        request = SmsRequest(to=CALLER, kind="voicemail", call_sid="CAnosender")
        dispatched = await acts.sms_dispatch(request)
        sent = await acts.sms_send(request)
    assert dispatched == SmsResult(sent=False, status="skipped",
                                   error="SMS is not configured (EXOTEL_SMS_SENDER)")
    assert not sent.sent and "EXOTEL_SMS_SENDER" in (sent.error or "")
    skipped = [e for e in recorder.events if e["event"] == "sms_skipped"]
    assert len(skipped) == 2 and skipped[0]["kind"] == "voicemail"
    assert {e["level"] for e in skipped} == {"info"}  # a log line, not an error
    assert CALLER not in str(skipped)  # numbers are masked in logs


# --- the queue node's wiring, with a scripted ctx -------------------------------------------


class ScriptedCtx:
    """The Context protocol with scripted activity answers."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.variables: dict[str, Any] = {"call_sid": "CAqueue1", "caller": CALLER}
        self.node_state: dict[str, Any] = {}
        self.inbox: dict[str, Any] = {}
        self.end_actions: dict[str, tuple[str, Any]] = {}
        self.answers = answers

    def render(self, template: str | None) -> str:
        return template or ""

    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

    async def activity(self, name: str, arg: Any, **_: Any) -> Any:
        return self.answers[name]

    def on_end(self, key: str, activity: str, arg: Any) -> None:
        self.end_actions[key] = (activity, arg)

    def cancel_on_end(self, key: str) -> None:
        self.end_actions.pop(key, None)


def _queue_node(**config: Any) -> Any:
    flow = FlowDefinition.model_validate(_flow([{"id": "q", "type": "queue", "config": {
        "queueId": 7, "offerCallback": True, **config}}], []))
    return flow.node("q")


async def test_queue_arms_a_missed_call_sms_and_the_callback_offer_replaces_it():
    node = _queue_node(sms={"template": "Sorry {{ caller }}"},
                       callbackSms={"template": "You are number {{ position }}.",
                                    "dltTemplateId": NODE_DLT})
    waiting = QueueStatus(outcome="waiting", queue_id=7, position=3, ewt_s=60.0,
                          settings=QueueSettings(max_wait_s=600, callback_enabled=True))
    ctx = ScriptedCtx({"queue_enter": waiting, "queue_poll": waiting,
                       "queue_callback": QueueCallbackResult(callback_id=42, position=3)})
    handler = QueueHandler()
    await handler.enter(ctx, node)
    activity, missed = ctx.end_actions[sms_steps.MISSED_CALL_KEY]
    assert activity == "sms_dispatch"
    assert (missed.kind, missed.to, missed.template, missed.call_sid) == (
        "missed_call", CALLER, "Sorry {{ caller }}", "CAqueue1")
    step = await handler.resume(ctx, node, CallEvent(kind=EventKind.digits, call_sid="CAqueue1",
                                                      carrier="test", digits="1"))
    assert step.hangup_reason == "callback_requested"
    assert sms_steps.MISSED_CALL_KEY not in ctx.end_actions
    _, offer = ctx.end_actions[sms_steps.CALLBACK_KEY]
    assert (offer.kind, offer.callback_id, offer.dlt_template_id) == (
        "callback_queued", 42, NODE_DLT)
    assert offer.variables["position"] == "3"
    assert sms.render(offer.template, offer.variables) == "You are number 3."


async def test_disabled_step_registers_nothing():
    node = _queue_node(sms={"enabled": False, "template": "x"})
    ctx = ScriptedCtx({})
    sms_steps.arm_missed_call(ctx, node)
    assert ctx.end_actions == {}


# --- texts, settings and the flow schema ------------------------------------------------------


def test_templates_read_the_old_placeholders_and_cap_the_body():
    assert sms.render("We will call you back at {time}.", {"time": "4:30 pm"}) == (
        "We will call you back at 4:30 pm.")
    assert sms.render("Hi {{ name }}{missing}!", {"name": "Asha"}) == "Hi Asha!"
    assert sms.render("{{ x }}", {"x": "a" * 5000}) == "a" * sms.MAX_BODY_CHARS
    assert sms.sms_number("+919812300001") and sms.sms_number("sip:a@b") is None


def test_settings_refuse_unusable_sms_configuration():
    with pytest.raises(ValidationError) as err:
        Settings(sms_voicemail_template="Thanks {{ name", exotel_dlt_template_ids={
            "voicemial": "1107000000000001", "missed_call": "11O7"},
            exotel_dlt_entity_id="entity")
    text = str(err.value)
    assert "voicemail SMS template does not parse" in text
    assert "unknown SMS kind 'voicemial'" in text
    assert "EXOTEL_DLT_TEMPLATE_IDS[missed_call] must be 6-32 digits" in text
    assert "EXOTEL_DLT_ENTITY_ID must be 6-32 digits" in text
    ok = Settings(exotel_dlt_template_id="1107000000000001",
                  exotel_dlt_template_ids={"voicemail": "1107000000000003"},
                  webhook_token=SecretStr("x" * 30))
    assert ok.dlt_template_id("voicemail") == "1107000000000003"
    assert ok.dlt_template_id("missed_call") == "1107000000000001"
    assert ok.dlt_template_id("missed_call", "1107000000000009") == "1107000000000009"


def test_flow_schema_validates_the_sms_block_and_names_the_field():
    bad_id = _flow([{"id": "vm", "type": "record", "config": {"sms": {"dltTemplateId": "x1"}}}],
                   [])
    with pytest.raises(ValidationError) as err:
        FlowDefinition.model_validate(bad_id)
    assert "dltTemplateId" in str(err.value)
    unknown = _flow([{"id": "vm", "type": "record", "config": {"sms": {"text": "hi"}}}], [])
    with pytest.raises(ValidationError, match="text"):
        FlowDefinition.model_validate(unknown)
    broken = FlowDefinition.model_validate(
        _flow([{"id": "vm", "type": "record", "config": {"sms": {"template": "Hi {{ caller"}}},
               {"id": "bye", "type": "hangup"}],
              [{"fromNode": "vm", "toNode": "bye", "port": "next"}]))
    problems = [p for p in validate_flow(broken) if p.node_id == "vm"]
    assert [(p.field, p.code) for p in problems] == [("config.sms.template", "bad_template")]
