"""Decision, gather and API nodes and the welcome node's business-hours check, in CallWorkflow
on a real worker (sandboxed), with the real activities against the test database and a local
order server; histories of these calls replay deterministically."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.business_hours import Schedule
from core.calls import CallOutcome, CallStart, CallState
from core.db.models import FlowExecution, NodeExecution
from core.flows.schema import FlowDefinition
from core.flows.validate import validate_flow
from core.repositories import business_hours as hours_repo
from core.telephony import CallEvent, Dialect, EventKind, Reply
from workflows import WORKFLOWS, workflow_runner

ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def n(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "name": node_id, "config": config}


def c(src: str, port: str, dst: str) -> dict[str, str]:
    return {"fromNode": src, "port": port, "toNode": dst}


def play(node_id: str, text: str) -> dict[str, Any]:
    return n(node_id, "play", message=text)


BYE = n("bye", "hangup", message="Goodbye.")


def flow(nodes: list[dict], connections: list[dict], entry: str = "welcome") -> dict[str, Any]:
    defn = {"name": f"logic {uuid.uuid4().hex[:6]}", "entryNode": entry, "nodes": nodes,
            "connections": connections}
    parsed = FlowDefinition.model_validate(defn)
    assert validate_flow(parsed, api_allowlist=["127.0.0.1"]) == [], validate_flow(
        parsed, api_allowlist=["127.0.0.1"])
    return defn


class Call:
    def __init__(self, client: Client, tq: str, definition: dict, caller: str = "+919876543210"):
        self.client = client
        self.tq = tq
        self.sid = f"L{uuid.uuid4().hex[:16]}"
        self.caller = caller
        self.start = CallStart(call_sid=self.sid, dialect=Dialect.xml, carrier="test",
                               caller=caller, called="+911234567890", flow_version=1,
                               definition=definition, grace_s=20.0)
        self.handle = client.get_workflow_handle(f"call-{self.sid}", result_type=CallOutcome)
        self.n = 0

    def event(self, kind: EventKind = EventKind.resumed, **kw: Any) -> CallEvent:
        return CallEvent(kind=kind, call_sid=self.sid, carrier="test", **kw)

    async def first(self) -> Reply:
        op = WithStartWorkflowOperation(
            "CallWorkflow", self.start, id=f"call-{self.sid}", task_queue=self.tq,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        return await self.client.execute_update_with_start_workflow(
            "advance", self.event(EventKind.started, caller=self.caller),
            start_workflow_operation=op, id=f"{self.sid}:0", result_type=Reply,
        )

    async def digits(self, digits: str) -> Reply:
        self.n += 1
        return await self.handle.execute_update(
            "advance", self.event(EventKind.digits, digits=digits), id=f"{self.sid}:{self.n}",
            result_type=Reply,
        )

    async def state(self) -> CallState:
        return await self.handle.query("state", result_type=CallState)

    async def outcome(self) -> CallOutcome:
        return await self.handle.result()


def texts(reply: Reply) -> list[str]:
    out: list[str] = []
    for item in reply.instructions:
        if item.kind == "say":
            out.append(item.text)
        for p in getattr(item, "prompt", []):
            if p.kind == "say":
                out.append(p.text)
    return out


async def schedule_row(sessionmaker, **body: Any) -> int:
    schedule = Schedule.model_validate({"name": f"hours {uuid.uuid4().hex[:8]}", **body})
    async with sessionmaker() as session:
        row = await hours_repo.create(session, schedule)
        await session.commit()
        return row.id


async def replays(client: Client, sid: str) -> None:
    history = await client.get_workflow_handle(f"call-{sid}").fetch_history()
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner(),
                        data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


# --- welcome: business hours ----------------------------------------------------------------


def welcome_flow(hours_id: int) -> dict:
    return flow(
        [n("welcome", "welcome", message="Welcome.", checkBusinessHours=True,
           businessHoursId=hours_id),
         play("menu", "Open: how can we help?"), play("vm", "Please leave a message."), BYE],
        [c("welcome", "open", "menu"), c("welcome", "closed", "vm"), c("menu", "next", "bye"),
         c("vm", "next", "bye")],
    )


async def test_welcome_closed_speaks_the_schedule_message(logic_worker, sessionmaker):
    client, tq = logic_worker
    hours = await schedule_row(sessionmaker, weekly={},
                               messages={"closed": "We are closed, sorry."})
    call = Call(client, tq, welcome_flow(hours))
    reply = await call.first()
    assert texts(reply) == ["Welcome.", "We are closed, sorry.", "Please leave a message.",
                            "Goodbye."]
    state = await call.state()
    assert state.variables["business_hours_open"] is False
    assert state.variables["business_hours_reason"] == "closed"
    assert (await call.outcome()).path == ["welcome", "vm", "bye"]
    await replays(client, call.sid)


async def test_welcome_open_all_week_goes_to_the_menu(logic_worker, sessionmaker):
    client, tq = logic_worker
    hours = await schedule_row(sessionmaker, weekly={
        d: [{"start": "00:00", "end": "24:00"}] for d in ALL_DAYS})
    call = Call(client, tq, welcome_flow(hours))
    reply = await call.first()
    assert texts(reply) == ["Welcome.", "Open: how can we help?", "Goodbye."]


async def test_welcome_with_a_deleted_schedule_serves_the_caller(logic_worker, sessionmaker):
    client, tq = logic_worker
    call = Call(client, tq, welcome_flow(2_000_000))
    reply = await call.first()
    assert "Open: how can we help?" in texts(reply)
    outcome = await call.outcome()
    async with sessionmaker() as session:
        row = await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == call.sid))
        visits = (await session.execute(select(NodeExecution).where(
            NodeExecution.execution_id == row.id).order_by(NodeExecution.seq))).scalars().all()
    assert outcome.path[0] == "welcome"
    assert visits[0].data["businessHours"]["error"] == "missing"


# --- decision ------------------------------------------------------------------------------


async def test_decision_first_match_wins_with_every_kind(logic_worker, sessionmaker):
    client, tq = logic_worker
    always = await schedule_row(sessionmaker, weekly={
        d: [{"start": "00:00", "end": "24:00"}] for d in ALL_DAYS})
    never = await schedule_row(sessionmaker, weekly={})
    decision = n("route", "decision", decisionType="mixed", conditions=[
        {"kind": "caller", "operator": "anonymous", "port": "anon"},
        {"kind": "time", "operator": "open", "businessHoursId": never, "port": "never"},
        {"kind": "all", "port": "vip", "conditions": [
            {"kind": "caller", "operator": "in", "value": ["09876543210", "+919999999999"]},
            {"kind": "time", "operator": "open", "businessHoursId": always},
            {"kind": "time", "operator": "weekday", "value": list(ALL_DAYS)},
            {"kind": "time", "operator": "between", "value": ["00:00", "23:59"]},
        ]},
        {"kind": "caller", "operator": "prefix", "value": "080", "port": "blr"},
    ])
    defn = flow(
        [n("welcome", "welcome"), decision, play("anon", "Anonymous."), play("never", "Never."),
         play("vip", "VIP line."), play("blr", "Bengaluru."), play("other", "Everyone else."),
         BYE],
        [c("welcome", "next", "route"), c("route", "anon", "anon"), c("route", "never", "never"),
         c("route", "vip", "vip"), c("route", "blr", "blr"), c("route", "default", "other"),
         *[c(x, "next", "bye") for x in ("anon", "never", "vip", "blr", "other")]],
    )
    cases = {"+919876543210": "VIP line.", "anonymous": "Anonymous.",
             "+918041234567": "Bengaluru.", "+917000000000": "Everyone else."}
    for caller, heard in cases.items():
        call = Call(client, tq, defn, caller=caller)
        assert texts(await call.first())[0] == heard, caller
    await replays(client, call.sid)


# --- gather ---------------------------------------------------------------------------------


def gather_flow(**gather: Any) -> dict:
    config = {"message": "Enter your account number.", "inputType": "digits",
              "minLength": 4, "maxLength": 8, "saveToVariable": "account", "maxRetries": 2,
              "timeout": 5, "invalidMessage": "That is not a valid account number.", **gather}
    return flow(
        [n("welcome", "welcome"), n("ask", "gather", **config),
         play("ok", "Thanks, account {{ account }}."), play("bad", "Too many attempts."),
         play("quiet", "We heard nothing."), BYE],
        [c("welcome", "next", "ask"), c("ask", "valid", "ok"), c("ask", "invalid", "bad"),
         c("ask", "timeout", "quiet"), c("ok", "next", "bye"), c("bad", "next", "bye"),
         c("quiet", "next", "bye")],
    )


async def test_gather_invalid_then_valid(logic_worker):
    client, tq = logic_worker
    call = Call(client, tq, gather_flow())
    first = await call.first()
    assert first.terminal.kind == "gather" and first.terminal.max_digits == 8
    retry = await call.digits("12")
    assert texts(retry) == ["That is not a valid account number.", "Enter your account number."]
    done = await call.digits("123456#")
    assert texts(done) == ["Thanks, account 123456.", "Goodbye."]
    assert (await call.state()).variables["account"] == "123456"


async def test_gather_invalid_port_after_max_retries(logic_worker):
    client, tq = logic_worker
    call = Call(client, tq, gather_flow(maxRetries=1))
    await call.first()
    await call.digits("1")
    final = await call.digits("abc")
    assert texts(final) == ["Too many attempts.", "Goodbye."]


async def test_gather_timeout_port_and_its_fallback_to_invalid(logic_worker):
    client, tq = logic_worker
    call = Call(client, tq, gather_flow(maxRetries=1, timeoutMessage="Still there?"))
    await call.first()
    again = await call.digits("")
    assert texts(again)[0] == "Still there?"
    assert texts(await call.digits("")) == ["We heard nothing.", "Goodbye."]
    # With no timeout connection, silence falls back to the invalid port.
    defn = gather_flow(maxRetries=0)
    defn["connections"] = [x for x in defn["connections"] if x["port"] != "timeout"]
    defn["nodes"] = [x for x in defn["nodes"] if x["id"] != "quiet"]
    call = Call(client, tq, defn)
    await call.first()
    assert texts(await call.digits("")) == ["Too many attempts.", "Goodbye."]


async def test_gather_confirm_back_and_redo(logic_worker):
    client, tq = logic_worker
    call = Call(client, tq, gather_flow(confirm=True))
    await call.first()
    confirm = await call.digits("1234")
    assert texts(confirm) == ["You entered 1 2 3 4. Press 1 to confirm, or 2 to enter it again."]
    assert confirm.terminal.max_digits == 1
    again = await call.digits("2")
    assert texts(again) == ["Enter your account number."]
    await call.digits("5678")
    wrong_key = await call.digits("7")
    assert texts(wrong_key)[0] == "That is not a valid account number."
    done = await call.digits("1")
    assert texts(done) == ["Thanks, account 5678.", "Goodbye."]


async def test_sensitive_input_is_masked_in_state_records_and_history(
    logic_worker, sessionmaker, orders
):
    client, tq = logic_worker
    server, url = orders
    card = "4111111111111111"
    defn = flow(
        [n("welcome", "welcome"),
         n("ask", "gather", message="Card number please.", inputType="luhn", maxLength=19,
           minLength=12, saveToVariable="card", sensitive=True, confirm=True),
         n("charge", "api", url=url + "/echo", method="POST", body={"card": "{{ card }}"}),
         play("ok", "Card {{ card }} noted."), play("fail", "Failed."), BYE],
        [c("welcome", "next", "ask"), c("ask", "valid", "charge"), c("charge", "success", "ok"),
         c("charge", "error", "fail"), c("ok", "next", "bye"), c("fail", "next", "bye")],
    )
    call = Call(client, tq, defn)
    await call.first()
    confirm = await call.digits(card)
    assert texts(confirm) == ["You entered a number ending in 1 1 1 1. Press 1 to confirm, or 2 "
                              "to enter it again."]
    done = await call.digits("1")
    assert texts(done) == ["Card ************1111 noted.", "Goodbye."]
    state = await call.state()
    assert state.variables["card"] == "************1111"
    # The API got the real number (it is the point of asking for it) ...
    assert json.loads(server.last["body"]) == {"card": card}
    await call.outcome()
    async with sessionmaker() as session:
        row = await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == call.sid))
        visits = (await session.execute(select(NodeExecution).where(
            NodeExecution.execution_id == row.id))).scalars().all()
    stored = json.dumps(row.variables) + json.dumps([v.data for v in visits])
    assert card not in stored
    assert "************1111" in stored
    # ... and the history holds it only where this test's own update brought it in clear
    # (a client that bypasses the API; through the API the keys are sealed first and the
    # history holds none: tests/e2e/test_sensitive_input.py).
    history = await call.handle.fetch_history()
    carrying = [e for e in history.events if card in str(e)]
    assert carrying and all(
        e.HasField("workflow_execution_update_accepted_event_attributes") for e in carrying
    )
    await replays(client, call.sid)


# --- API ------------------------------------------------------------------------------------


def api_flow(url: str, **api: Any) -> dict:
    return flow(
        [n("welcome", "welcome"),
         n("lookup", "api", url=url, responseMappings={"status": "order_status",
                                                       "customer.tier": "tier"},
           statusVariable="http_status", **api),
         n("route", "decision", conditions=[
             {"kind": "variable", "variable": "order_status", "operator": "equals",
              "value": "shipped", "port": "shipped"},
             {"kind": "variable", "variable": "tier", "operator": "exists", "port": "tiered"}]),
         play("shipped", "Shipped."), play("tiered", "Tiered."), play("other", "Other."),
         play("failed", "Lookup failed {{ http_status }}."), play("slow", "Too slow."), BYE],
        [c("welcome", "next", "lookup"), c("lookup", "success", "route"),
         c("lookup", "error", "failed"), c("lookup", "timeout", "slow"),
         c("route", "shipped", "shipped"), c("route", "tiered", "tiered"),
         c("route", "default", "other"),
         *[c(x, "next", "bye") for x in ("shipped", "tiered", "other", "failed", "slow")]],
    )


@pytest.mark.parametrize(
    ("path", "extra", "heard"),
    [
        ("/orders/123456", {}, "Shipped."),
        ("/orders/333333", {}, "Other."),
        ("/fail", {}, "Lookup failed 500."),
        ("/slow", {"timeout": 0.5}, "Too slow."),
        ("/huge", {}, "Lookup failed ."),
        ("/redirect-private", {}, "Lookup failed ."),
    ],
)
async def test_api_node_ports(logic_worker, orders, path, extra, heard):
    client, tq = logic_worker
    _, url = orders
    call = Call(client, tq, api_flow(url + path, **extra))
    assert texts(await call.first())[0] == heard
    if path == "/orders/123456":
        state = await call.state()
        assert state.variables["order_status"] == "shipped"
        assert state.variables["http_status"] == 200 and state.variables["api_status"] == 200
        await replays(client, call.sid)


async def test_gather_api_decision_sample_flow_end_to_end(logic_worker, orders):
    from core.flows.samples import order_status_flow

    client, tq = logic_worker
    _, url = orders
    defn = order_status_flow(orders_url=url + "/orders/{{ order_number }}").to_json_dict()
    expected = {"123456": "has been shipped and will reach you by Friday",
                "222222": "has been delivered", "333333": "is being prepared",
                "444444": "could not find the status", "999999": "cannot look up orders"}
    for number, heard in expected.items():
        call = Call(client, tq, defn)
        first = await call.first()
        assert "Please enter your order number" in " ".join(texts(first))
        reply = await call.digits(number)
        assert heard in " ".join(texts(reply)), (number, texts(reply))
        assert reply.final
