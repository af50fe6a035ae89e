"""The API's walk of a call's first turn (api.opening) against the workflow's own walk.

The API answers a first turn itself only because the walker and handlers are the same code
and deterministic: these tests hold it to that. Two calls of the same flow, one whose workflow
walks the first turn (update-with-start), one started from the API's opening, must give the
caller the same first reply, leave the same state, and answer the next event the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from test_call_workflow import MENU_FLOW, Call

from api.opening import walk_opening
from core.business_hours import ScheduleBundle, ScheduleRequest
from core.calls import CallState, Opening
from core.flows.samples import main_support_flow
from core.telephony import Dialect, EventKind, Reply


async def _no_schedules(req: ScheduleRequest) -> ScheduleBundle:
    return ScheduleBundle(missing=req.ids)


async def _schedules_down(req: ScheduleRequest) -> ScheduleBundle:
    raise ConnectionError("database unavailable")


def _main_flow() -> dict[str, Any]:
    return main_support_flow().to_json_dict()


async def _opening(call: Call, loader=_no_schedules) -> Opening | None:
    return await walk_opening(
        call.start, call.event(EventKind.started, caller="+919876543210"), f"{call.sid}:0",
        loader, at=datetime.now(UTC),
    )


async def _start_opened(call: Call, opening: Opening) -> None:
    await call.client.start_workflow(
        "CallWorkflow", call.start.model_copy(update={"opening": opening}),
        id=f"call-{call.sid}", task_queue=call.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )


def _comparable(state: CallState) -> dict[str, Any]:
    variables = {k: v for k, v in state.variables.items() if k != "call_sid"}
    return {
        "current_node": state.current_node, "turn": state.turn, "variables": variables,
        "path": [(v.node_id, v.port, v.exited_at is None) for v in state.history],
        "pending": state.pending.model_dump(exclude={"turn"}) if state.pending else None,
    }


def _same_reply(a: Reply, b: Reply) -> None:
    assert a.model_dump() == b.model_dump()


@pytest.mark.parametrize("dialect", [Dialect.xml, Dialect.exotel])
@pytest.mark.parametrize("flow", ["menu", "main"])
async def test_opening_is_the_workflows_own_first_turn(call_worker, flow, dialect):
    client, queue = call_worker
    definition = MENU_FLOW if flow == "menu" else _main_flow()
    walked = Call(client, queue, dialect=dialect, flow=definition)
    opened = Call(client, queue, dialect=dialect, flow=definition)
    # Caller ids are part of the prompts ("caller {{ caller }}"): the same on both calls.
    expected = await walked.first()
    opening = await _opening(opened)
    assert opening is not None
    _same_reply(opening.reply, expected)
    await _start_opened(opened, opening)
    assert _comparable(await opened.state()) == _comparable(await walked.state())
    # The workflow goes on from the opening exactly as from its own walk: a wrong key, then
    # a valid one (the main flow's 0 repeats its menu: its other keys lead to agents).
    for digits in ("7", "1" if flow == "menu" else "0"):
        a = await walked.send(walked.event(EventKind.digits, digits=digits))
        b = await opened.send(opened.event(EventKind.digits, digits=digits))
        _same_reply(a, b)
    assert _comparable(await opened.state()) == _comparable(await walked.state())


async def test_the_first_webhook_again_gets_the_opening_and_moves_nothing(call_worker):
    client, queue = call_worker
    call = Call(client, queue, flow=MENU_FLOW)
    opening = await _opening(call)
    assert opening is not None
    await _start_opened(call, opening)
    again = await call.send(call.event(EventKind.started), update_id=opening.update_id)
    _same_reply(again, opening.reply)
    state = await call.state()
    assert state.turn == 1 and state.current_node == "menu"
    assert [v.node_id for v in state.history] == ["welcome", "menu"]


QUEUE_FIRST = {
    "name": "Straight to the queue",
    "nodes": [
        {"id": "welcome", "type": "welcome", "name": "Welcome", "config": {"message": "Hi."}},
        {"id": "q", "type": "queue", "name": "Queue", "config": {"queueId": 1}},
        {"id": "bye", "type": "hangup", "name": "Bye", "config": {}},
    ],
    "connections": [
        {"fromNode": "welcome", "toNode": "q", "port": "next"},
        {"fromNode": "q", "toNode": "bye", "port": "timeout"},
    ],
}

API_FIRST = {
    "name": "Look the caller up first",
    "nodes": [
        {"id": "lookup", "type": "api", "name": "Lookup",
         "config": {"url": "https://crm.example.com/callers/{{ caller }}", "method": "GET"}},
        {"id": "menu", "type": "menu", "name": "Menu",
         "config": {"message": "Press 1.", "options": [{"digit": "1", "label": "One"}]}},
        {"id": "bye", "type": "hangup", "name": "Bye", "config": {}},
    ],
    "connections": [
        {"fromNode": "lookup", "toNode": "menu", "port": "success"},
        {"fromNode": "lookup", "toNode": "menu", "port": "error"},
        {"fromNode": "menu", "toNode": "bye", "port": "1"},
    ],
}

HANGS_UP = {
    "name": "Closed for good",
    "nodes": [
        {"id": "bye", "type": "hangup", "name": "Bye", "config": {"message": "We have moved."}},
    ],
    "connections": [],
}

SCHEDULED = {
    "name": "With a schedule",
    "nodes": [
        {"id": "welcome", "type": "welcome", "name": "Welcome",
         "config": {"message": "Hello.", "checkBusinessHours": True, "businessHoursId": 7}},
        {"id": "menu", "type": "menu", "name": "Menu",
         "config": {"message": "Press 1.", "options": [{"digit": "1", "label": "One"}]}},
        {"id": "bye", "type": "hangup", "name": "Bye", "config": {}},
    ],
    "connections": [
        {"fromNode": "welcome", "toNode": "menu", "port": "open"},
        {"fromNode": "welcome", "toNode": "bye", "port": "closed"},
        {"fromNode": "menu", "toNode": "bye", "port": "1"},
    ],
}


@pytest.mark.parametrize("flow", [QUEUE_FIRST, API_FIRST, HANGS_UP], ids=["queue", "api", "hangup"])
async def test_first_turns_that_need_the_workflow_are_left_to_it(call_worker, flow):
    """A queue place, an API request or the call's end are the workflow's to do."""
    client, queue = call_worker
    assert await _opening(Call(client, queue, flow=flow)) is None


async def test_schedule_missing_is_open_but_a_schedule_that_cannot_be_read_is_left_to_the_workflow(
    call_worker,
):
    client, queue = call_worker
    opening = await _opening(Call(client, queue, flow=SCHEDULED))
    # A missing schedule: the caller is served, as the workflow does.
    assert opening is not None and opening.node_id == "menu"
    assert opening.visits[0].data["businessHours"] == {"open": True, "error": "missing"}
    assert await _opening(Call(client, queue, flow=SCHEDULED), _schedules_down) is None
