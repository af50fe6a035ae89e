"""Later turns the API walks itself (api.opening.walk_later + the `walked` signal) against the
workflow's own walk of the same turns.

After the opening, the API keeps a cursor of where the call stands and walks a turn that needs
only the flow and the clock itself, telling the workflow by a signal before the caller hears
it. That is only right if the workflow ends up exactly where its own walk would have left it:
two calls of one flow, one answered by updates, one by the API's walks, must give the caller
the same replies, hold the same state after every turn and end the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_call_workflow import MENU_FLOW, Call
from test_opening import (
    _comparable,
    _main_flow,
    _no_schedules,
    _opening,
    _same_reply,
    _start_opened,
)

from api.opening import walk_later
from core.calls import CallCursor, Opening, TurnReply, WalkedTurn
from core.flows.schema import FlowDefinition
from core.telephony import CallEvent, Dialect, EventKind, Reply


def _cursor(call: Call, last: WalkedTurn) -> CallCursor:
    return CallCursor(
        flow_id=None, flow_version=1, definition_checksum="test", dialect=call.start.dialect,
        last=last, silent_after=datetime.now(UTC) + timedelta(minutes=5),
    )


async def _walk(
    call: Call, last: WalkedTurn, event: CallEvent, update_id: str
) -> WalkedTurn | None:
    flow = FlowDefinition.model_validate(call.start.definition)
    return await walk_later(flow, _cursor(call, last), event, update_id, _no_schedules)


async def _opened(call: Call) -> Opening:
    opening = await _opening(call)
    assert opening is not None
    await _start_opened(call, opening)
    return opening


async def _walked_turn(call: Call, last: WalkedTurn, digits: str) -> WalkedTurn:
    call.n += 1
    event = call.event(EventKind.digits, digits=digits)
    walked = await _walk(call, last, event, f"{call.sid}:{call.n}")
    assert walked is not None
    await call.handle.signal("walked", walked)
    return walked


@pytest.mark.parametrize("dialect", [Dialect.xml, Dialect.exotel])
@pytest.mark.parametrize(
    ("flow", "keys"),
    [
        (MENU_FLOW, ["7", "1"]),
        (MENU_FLOW, ["7", "7", "7"]),
        ("main", ["7", "0", "8", "7", "7", "7"]),
    ],
    ids=["menu-choice", "menu-retries", "main-repeat"],
)
async def test_walked_turns_are_the_workflows_own(call_worker, flow, keys, dialect):
    client, queue = call_worker
    definition = _main_flow() if flow == "main" else flow
    updated = Call(client, queue, dialect=dialect, flow=definition)
    walked_call = Call(client, queue, dialect=dialect, flow=definition)
    await _opened(updated)
    last: WalkedTurn = await _opened(walked_call)
    replies: list[Reply] = []
    for digits in keys:
        expected = await updated.send(updated.event(EventKind.digits, digits=digits))
        last = await _walked_turn(walked_call, last, digits)
        _same_reply(last.reply, expected)
        replies.append(expected)
        if expected.final:
            break
        assert _comparable(await walked_call.state()) == _comparable(await updated.state())
    assert replies[-1].final  # every case ends in a hang-up
    a, b = await updated.outcome(), await walked_call.outcome()
    assert (b.status, b.reason, b.path, b.turns) == (a.status, a.reason, a.path, a.turns)


async def test_a_turn_that_needs_the_workflow_is_left_to_it(call_worker):
    """Key 2 in the main menu leads to a queue: a queue place is the workflow's to take."""
    client, queue = call_worker
    call = Call(client, queue, flow=_main_flow())
    opening = await _opened(call)
    assert await _walk(call, opening, call.event(EventKind.digits, digits="2"), "x:1") is None
    # ...and the workflow walks it when asked by update, from where the opening left it.
    reply = await call.send(call.event(EventKind.digits, digits="2"))
    assert reply.turn == 2
    assert (await call.state()).current_node != "main_menu"


async def test_an_update_under_a_walked_turns_id_gets_its_reply_and_moves_nothing(call_worker):
    """The API could not tell whether its signal landed (budget, restart) and asks by update
    under the same id: the caller gets the walked reply again, the call does not move."""
    client, queue = call_worker
    call = Call(client, queue, flow=MENU_FLOW)
    opening = await _opened(call)
    walked = await _walked_turn(call, opening, "7")
    before = _comparable(await call.state())
    again = await call.send(call.event(EventKind.digits, digits="7"), update_id=walked.update_id)
    _same_reply(again, walked.reply)
    assert _comparable(await call.state()) == before
    assert before["turn"] == 2


async def test_a_walked_turn_out_of_step_is_not_taken(call_worker):
    """A walk from a stale cursor (the call moved by update meanwhile) changes nothing, and
    the call goes on from where the workflow is."""
    client, queue = call_worker
    call = Call(client, queue, flow=MENU_FLOW)
    opening = await _opened(call)
    await call.send(call.event(EventKind.digits, digits="7"))  # turn 2, by update
    state = _comparable(await call.state())
    stale = await _walk(call, opening, call.event(EventKind.digits, digits="1"), "stale:1")
    assert stale is not None and stale.reply.final
    await call.handle.signal("walked", stale)
    assert _comparable(await call.state()) == state
    reply = await call.send(call.event(EventKind.digits, digits="1"))
    assert reply.final and reply.turn == 3
    assert (await call.outcome()).path == ["welcome", "menu", "billing", "bye"]


async def _final_write(call: Call) -> str:
    """How the call's final record was written: "activity" (a task on the queue) or "local"."""
    kinds = set()
    async for event in call.handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            kinds.add(event.activity_task_scheduled_event_attributes.activity_type.name)
        if event.HasField("marker_recorded_event_attributes"):
            kinds.add(event.marker_recorded_event_attributes.marker_name)
    if "finalize_call" in kinds:
        return "activity"
    assert "core_local_activity" in kinds, kinds
    return "local"


async def test_the_final_write_is_local_only_when_no_update_waits(call_worker):
    """A local activity holds its workflow task open until it is done: fine after a hang-up
    the API walked (nobody waits), not after one sent as an update's answer."""
    client, queue = call_worker
    by_update = Call(client, queue, flow=MENU_FLOW)
    by_signal = Call(client, queue, flow=MENU_FLOW)
    await _opened(by_update)
    opening = await _opened(by_signal)
    assert (await by_update.send(by_update.event(EventKind.digits, digits="1"))).final
    assert (await _walked_turn(by_signal, opening, "1")).reply.final
    for call in (by_update, by_signal):
        assert (await call.outcome()).status == "completed"
    assert await _final_write(by_update) == "activity"
    assert await _final_write(by_signal) == "local"


async def _first_by_update(call: Call) -> TurnReply:
    """The first turn walked by the workflow itself (update-with-start), with what it answers."""
    answered = await call.first(result_type=TurnReply)
    assert isinstance(answered, TurnReply)
    return answered


async def test_a_turn_the_workflow_walked_hands_back_a_cursor_the_api_walks_on_from(
    call_worker,
):
    """A call the API could not open (here: opened by update-with-start) is not stuck on
    updates: the workflow's answer carries where the call stands, and the API's walks from
    there are the workflow's own. A hang-up hands back nothing (the call is ending)."""
    client, queue = call_worker
    updated = Call(client, queue, flow=MENU_FLOW)
    walked_call = Call(client, queue, flow=MENU_FLOW)
    for call in (updated, walked_call):
        call.start = call.start.model_copy(update={"definition_checksum": "engine-menu-flow"})
    await updated.first()
    answered = await _first_by_update(walked_call)
    cursor = answered.cursor
    assert cursor is not None and cursor.definition_checksum == "engine-menu-flow"
    assert cursor.last.update_id == f"{walked_call.sid}:0"
    assert cursor.last.reply == answered.plain() and cursor.last.node_id == "menu"
    last = cursor.last
    for digits in ("7", "1"):
        expected = await updated.send(updated.event(EventKind.digits, digits=digits))
        last = await _walked_turn(walked_call, last, digits)
        _same_reply(last.reply, expected)
    a, b = await updated.outcome(), await walked_call.outcome()
    assert (b.status, b.reason, b.path, b.turns) == (a.status, a.reason, a.path, a.turns)
    ending = Call(client, queue, flow=MENU_FLOW)
    ending.start = ending.start.model_copy(update={"definition_checksum": "engine-menu-flow"})
    await _first_by_update(ending)
    bye = await ending.handle.execute_update(
        "advance", ending.event(EventKind.digits, digits="1"), id=f"{ending.sid}:1",
        result_type=TurnReply,
    )
    assert bye.final and bye.cursor is None
