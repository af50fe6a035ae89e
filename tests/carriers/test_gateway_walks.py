"""When the gateway walks a later turn itself and when it leaves it to the workflow, against a
real Redis: a walked turn goes to the workflow as one `walked` signal (no update) and moves the
call's cursor; a retry of it sends nothing; anything only the workflow may do, a call near its
silence deadline, sealed keys or a flow the API cannot find goes as an update and drops the
cursor. The Temporal side is a recording stand-in: what matters is what the gateway sends it.
(That the workflow takes a walked turn as its own is tests/engine/test_walked_turns.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.call_gateway import TemporalCallGateway
from api.opening import walk_opening
from core.business_hours import ScheduleBundle, ScheduleRequest
from core.calls import CallCursor, CallStart, TurnReply, WalkedTurn
from core.config import Settings
from core.flows import schema
from core.flows.schema import parse_frozen
from core.redis import make_redis
from core.telephony import CallEvent, Dialect, EventKind, Gather, Reply, Say

FLOW: dict[str, Any] = {
    "name": "Gateway walk test",
    "nodes": [
        {"id": "welcome", "type": "welcome", "name": "Welcome", "config": {"message": "Hello."}},
        {"id": "menu", "type": "menu", "name": "Menu",
         "config": {"message": "Press 1 to leave, 2 for the queue.",
                    "options": [{"digit": "1", "label": "Leave"}, {"digit": "2", "label": "Q"}],
                    "maxRetries": 3, "invalidMessage": "Not a valid choice."}},
        {"id": "q", "type": "queue", "name": "Queue", "config": {"queueId": 1}},
        {"id": "bye", "type": "hangup", "name": "Bye", "config": {"message": "Goodbye."}},
    ],
    "connections": [
        {"fromNode": "welcome", "toNode": "menu", "port": "next"},
        {"fromNode": "menu", "toNode": "bye", "port": "1"},
        {"fromNode": "menu", "toNode": "q", "port": "2"},
        {"fromNode": "q", "toNode": "bye", "port": "timeout"},
    ],
}
CHECKSUM = "gateway-walk-test-flow"
UPDATE_REPLY = TurnReply(instructions=[Say(text="from the workflow")], turn=2)


class _Handle:
    def __init__(self, client: _Client) -> None:
        self.client = client

    async def execute_update(self, name: str, event: CallEvent, **kw: Any) -> TurnReply:
        self.client.sent.append(("update", kw["id"], event))
        return self.client.answer

    async def signal(self, name: str, arg: Any) -> None:
        self.client.sent.append(("signal", name, arg))


class _Client:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.answer: TurnReply = UPDATE_REPLY  # what every update answers

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self)


async def _no_schedules(req: ScheduleRequest) -> ScheduleBundle:
    return ScheduleBundle(missing=req.ids)


@pytest.fixture
async def gateway(redis_url: str, settings: Settings):
    redis = make_redis(redis_url)
    client = _Client()
    loaded: list[tuple[int, int]] = []

    async def no_flow(*_: Any) -> None:
        return None

    async def load_version(flow_id: int, version: int) -> tuple[dict[str, Any], str] | None:
        loaded.append((flow_id, version))
        return (FLOW, CHECKSUM) if (flow_id, version) == (5, 2) else None

    gw = TemporalCallGateway(
        client, redis, settings, no_flow, schedules=_no_schedules, walk_turns=True,
        load_version=load_version,
    )
    yield gw, client, redis, loaded
    await redis.aclose()


async def _opened(redis, sid: str, *, silent_in_s: float = 60, checksum: str = CHECKSUM,
                  flow_id: int = 5) -> CallCursor:
    """A call whose opening the API answered: its cursor and cached reply, as the gateway
    leaves them after a plain start."""
    start = CallStart(call_sid=sid, dialect=Dialect.xml, definition=FLOW,
                      definition_checksum=checksum, flow_id=flow_id, flow_version=2)
    opening = await walk_opening(
        start, CallEvent(kind=EventKind.started, call_sid=sid), f"{sid}:0", _no_schedules
    )
    assert opening is not None
    cursor = CallCursor(
        flow_id=flow_id, flow_version=2, definition_checksum=checksum, dialect=Dialect.xml,
        last=opening, silent_after=datetime.now(UTC) + timedelta(seconds=silent_in_s),
    )
    await redis.set(f"call:{sid}:cursor", cursor.model_dump_json())
    await redis.set(f"call:{sid}:reply", opening.reply.model_dump_json())
    return cursor


def _keys(sid: str, digits: str) -> CallEvent:
    return CallEvent(kind=EventKind.digits, call_sid=sid, digits=digits)


async def _advance(gw: TemporalCallGateway, event: CallEvent, update_id: str) -> Reply:
    return await gw.advance(event, update_id=update_id, dialect=Dialect.xml, start=False)


async def _cursor(redis, sid: str) -> CallCursor | None:
    raw = await redis.get(f"call:{sid}:cursor")
    return CallCursor.model_validate_json(raw) if raw else None


async def test_a_wrong_key_is_walked_signalled_once_and_moves_the_cursor(gateway) -> None:
    gw, client, redis, _ = gateway
    parse_frozen(FLOW, CHECKSUM)  # this process has the flow
    sid = "WALK1"
    await _opened(redis, sid)
    reply = await _advance(gw, _keys(sid, "7"), "u1")
    assert reply.turn == 2 and reply.terminal is not None and reply.terminal.kind == "gather"
    assert reply.terminal.prompt[0] == Say(text="Not a valid choice.")
    assert [(kind, name) for kind, name, _ in client.sent] == [("signal", "walked")]
    walked: WalkedTurn = client.sent[0][2]
    assert walked.update_id == "u1" and walked.reply == reply
    assert walked.node_state == {"invalid": 1, "timeout": 0}
    cursor = await _cursor(redis, sid)
    assert cursor is not None and cursor.last == walked
    # The carrier retries the webhook: the same reply, nothing sent again.
    again = await _advance(gw, _keys(sid, "7"), "u1")
    assert again == reply and len(client.sent) == 1
    # Key 1 hangs up: walked too, and nothing is walked after a hang-up.
    bye = await _advance(gw, _keys(sid, "1"), "u2")
    assert bye.final and client.sent[-1][1] == "walked"
    assert client.sent[-1][2].hangup_reason is not None


async def test_a_queue_is_the_workflows_an_update_and_the_cursor_is_dropped(gateway) -> None:
    gw, client, redis, _ = gateway
    parse_frozen(FLOW, CHECKSUM)
    sid = "WALK2"
    await _opened(redis, sid)
    reply = await _advance(gw, _keys(sid, "2"), "u1")
    assert reply == UPDATE_REPLY.plain()
    assert [(kind, name) for kind, name, _ in client.sent] == [("update", "u1")]
    assert await _cursor(redis, sid) is None
    # From here every turn is an update: the workflow has moved where the API cannot see.
    gather = Reply(instructions=[Gather(max_digits=1)])
    await redis.set(f"call:{sid}:reply", gather.model_dump_json())
    await _advance(gw, _keys(sid, "7"), "u2")
    assert client.sent[-1][:2] == ("update", "u2")


async def test_near_the_silence_deadline_the_workflow_decides(gateway) -> None:
    """The workflow may be ending the call as silent: the API does not walk past it."""
    gw, client, redis, _ = gateway
    parse_frozen(FLOW, CHECKSUM)
    sid = "WALK3"
    await _opened(redis, sid, silent_in_s=1)
    await _advance(gw, _keys(sid, "7"), "u1")
    assert [kind for kind, _, _ in client.sent] == ["update"]
    assert await _cursor(redis, sid) is None


async def test_keys_for_a_sensitive_gather_go_sealed_to_the_workflow(gateway) -> None:
    gw, client, redis, _ = gateway
    parse_frozen(FLOW, CHECKSUM)
    sid = "WALK4"
    await _opened(redis, sid)
    sensitive = Reply(instructions=[Gather(max_digits=4, sensitive=True)])
    await redis.set(f"call:{sid}:reply", sensitive.model_dump_json())
    await _advance(gw, _keys(sid, "1234"), "u1")
    kind, _, event = client.sent[-1]
    assert kind == "update" and event.sealed is not None and event.digits is None


async def test_a_flow_this_process_has_not_parsed_is_loaded_by_version(gateway) -> None:
    gw, client, redis, loaded = gateway
    sid = "WALK5"
    # A checksum no other test parsed: as in an API replica that did not start this call.
    await _opened(redis, sid, checksum="loaded-" + CHECKSUM)
    schema._frozen.pop("loaded-" + CHECKSUM, None)  # the opening's walk parsed it: forget it
    await _advance(gw, _keys(sid, "7"), "u1")
    # The database's version has another checksum than the call's: never walk a wrong flow.
    assert loaded == [(5, 2)] and [kind for kind, _, _ in client.sent] == ["update"]
    sid = "WALK6"
    await _opened(redis, sid, checksum=CHECKSUM)
    schema._frozen.pop(CHECKSUM, None)  # forget it: this replica never parsed it
    await _advance(gw, _keys(sid, "7"), "u1")
    assert loaded[-1] == (5, 2) and client.sent[-1][:2] == ("signal", "walked")


async def test_with_api_turns_off_every_later_turn_is_an_update(gateway, settings) -> None:
    _, client, redis, _ = gateway
    parse_frozen(FLOW, CHECKSUM)
    gw = TemporalCallGateway(
        client, redis, settings, lambda *_: None, schedules=_no_schedules, walk_turns=False
    )
    sid = "WALK7"
    await _opened(redis, sid)
    await _advance(gw, _keys(sid, "7"), "u1")
    assert [kind for kind, _, _ in client.sent] == ["update"]
    assert await _cursor(redis, sid) is None


async def test_a_cursor_the_workflow_hands_back_lets_the_api_walk_the_next_turn(gateway) -> None:
    """A turn the workflow walked (here: the opening it walked itself) may hand back where the
    call stands; the API keeps it, strips it from what it caches, and walks the next turn."""
    gw, client, redis, _ = gateway
    parse_frozen(FLOW, CHECKSUM)
    sid = "WALK8"
    handed = await _opened(redis, sid)
    await redis.delete(f"call:{sid}:cursor", f"call:{sid}:reply")
    last = handed.last.model_copy(update={"update_id": "u0"})
    client.answer = TurnReply.of(last.reply, handed.model_copy(update={"last": last}))
    first = await _advance(gw, CallEvent(kind=EventKind.resumed, call_sid=sid), "u0")
    assert first == handed.last.reply
    assert "cursor" not in await redis.get(f"call:{sid}:reply")
    stored = await _cursor(redis, sid)
    assert stored is not None and stored.last.update_id == "u0"
    await _advance(gw, _keys(sid, "7"), "u1")
    sent = [(kind, name) for kind, name, _ in client.sent]
    assert sent == [("update", "u0"), ("signal", "walked")]
