"""Exotel universal app over real HTTP: parameter quirks, applet bodies, bad input, retries."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from carrier_doubles import JINGLE, SALES, WEBHOOK_TOKEN, LiveServer, ScriptedGateway

from api.carriers.exotel import select_case
from core.telephony import (
    Dial,
    Dialect,
    DialStatus,
    EventKind,
    Gather,
    Hangup,
    Hold,
    Pause,
    Play,
    Record,
    Reply,
    Say,
)

BASE = f"/api/exotel/{WEBHOOK_TOKEN}"


def new_sid() -> str:
    return f"exo{uuid.uuid4().hex[:20]}"


class Clock:
    """Exotel's CurrentTime, one second later on every hit."""

    def __init__(self) -> None:
        self.second = 0

    def next(self) -> str:
        self.second += 1
        minutes, seconds = divmod(self.second, 60)
        return f"2025-03-01 10:{minutes:02d}:{seconds:02d}"


def exotel_params(sid: str, clock: Clock, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "CallFrom": "09876543210",
        "CallTo": "08047112233",
        "From": "09876543210",
        "To": "08047112233",
        "Direction": "incoming",
        "CallType": "call-attempt",
        "CurrentTime": clock.next(),
        "EndTime": "1970-01-01 05:30:00",
        **extra,
    }


async def passthru(client: httpx.AsyncClient, params: dict[str, str]) -> str:
    response = await client.get(f"{BASE}/passthru", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain"
    return str(json.loads(response.text)["select"])


def assert_error(response: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    for word in mentions:
        assert word in body["detail"]
    return body


# --- a whole call --------------------------------------------------------------------------------


async def test_call_walks_every_applet(client: httpx.AsyncClient, gateway: ScriptedGateway) -> None:
    sid, clock = new_sid(), Clock()

    assert await passthru(client, exotel_params(sid, clock)) == "say"
    greeting = await client.get(f"{BASE}/greeting", params={"CallSid": sid})
    assert greeting.text.splitlines() == [JINGLE, "Welcome to the demo line."]

    assert await passthru(client, exotel_params(sid, clock)) == "gather"
    gather = (await client.get(f"{BASE}/gather", params={"CallSid": sid})).json()
    assert gather == {
        "gather_prompt": {"text": "Press 1 for sales, 2 to leave a message, 3 to hold."},
        "max_input_digits": 1,
        "finish_on_key": "#",
        "input_timeout": 5,
        "repeat_menu": 0,
        "repeat_gather_prompt": {"text": "Press 1 for sales, 2 to leave a message, 3 to hold."},
    }

    assert await passthru(client, exotel_params(sid, clock, digits='"1"')) == "say"
    assert await passthru(client, exotel_params(sid, clock)) == "connect"
    connect = (await client.get(f"{BASE}/connect", params={"CallSid": sid})).json()
    assert connect == {
        "fetch_after_attempt": False,
        "destination": {"numbers": SALES.numbers},
        "outgoing_phone_number": "+911234567890",
        "record": True,
        "recording_channels": "dual",
        "max_ringing_duration": 20,
        "max_conversation_duration": 600,
        "music_on_hold": {"type": "operator_tone"},
        "parallel_ringing": {"activate": True, "max_parallel_attempts": 2},
        "start_call_playback": {
            "playback_to": "callee",
            "type": "text",
            "value": "Sales call from the IVR",
        },
    }

    dialled = exotel_params(
        sid, clock, DialCallStatus="no-answer", DialWhomNumber="09000000001",
        DialCallDuration="20", CallType="incomplete",
    )
    assert await passthru(client, dialled) == "say"
    assert await passthru(client, exotel_params(sid, clock)) == "record"
    recorded = exotel_params(sid, clock, RecordingUrl="https://s3.example.com/rec/1.mp3")
    assert await passthru(client, recorded) == "say"
    assert await passthru(client, exotel_params(sid, clock)) == "hangup"
    # The call is over: a late Passthru is told to hang up, not an error.
    assert await passthru(client, exotel_params(sid, clock)) == "hangup"

    kinds = [a.event.kind for a in gateway.advances_for(sid)]
    assert kinds == [
        EventKind.resumed, EventKind.resumed, EventKind.digits, EventKind.resumed,
        EventKind.dial_result, EventKind.resumed, EventKind.recording, EventKind.resumed,
        EventKind.resumed,
    ]
    starts = [a.start for a in gateway.advances_for(sid)]
    assert starts == [k == EventKind.resumed for k in kinds]
    assert {a.dialect for a in gateway.advances_for(sid)} == {Dialect.exotel}
    dial_event = gateway.advances_for(sid)[4].event
    assert dial_event.dial_status == DialStatus.no_answer
    assert dial_event.dial_number == "+919000000001"
    assert dial_event.dial_duration_s == 20
    assert gateway.advances_for(sid)[6].event.recording_url == "https://s3.example.com/rec/1.mp3"


async def test_passthru_accepts_post_form(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    response = await client.post(f"{BASE}/passthru", data=exotel_params(sid, Clock()))
    assert response.status_code == 200
    assert json.loads(response.text) == {"select": "say"}
    assert gateway.advances_for(sid)[0].event.caller == "+919876543210"


# --- parameter quirks ----------------------------------------------------------------------------


async def start_call(client: httpx.AsyncClient, sid: str, clock: Clock) -> None:
    """Bring a fresh call to its menu (the next Passthru carries digits)."""
    assert await passthru(client, exotel_params(sid, clock)) == "say"
    assert await passthru(client, exotel_params(sid, clock)) == "gather"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('"89"', "89"), ("89", "89"), ('""', ""), ("", ""), (' "1#" ', "1#"), ('"*"', "*")],
)
async def test_digits_unquoted(
    client: httpx.AsyncClient, gateway: ScriptedGateway, raw: str, expected: str
) -> None:
    sid, clock = new_sid(), Clock()
    await start_call(client, sid, clock)
    await passthru(client, exotel_params(sid, clock, digits=raw))
    event = gateway.advances_for(sid)[-1].event
    assert event.kind == EventKind.digits
    assert event.digits == expected
    assert gateway.advances_for(sid)[-1].start is False


@pytest.mark.parametrize("name", ["digits", "Digits", "DIGITS"])
async def test_parameter_names_any_case(
    client: httpx.AsyncClient, gateway: ScriptedGateway, name: str
) -> None:
    sid, clock = new_sid(), Clock()
    await start_call(client, sid, clock)
    params = {
        "callsid": sid,
        "CALLFROM": "+919876543210",
        "callto": "08047112233",
        "currenttime": clock.next(),
        name: '"2"',
    }
    assert await passthru(client, params) == "record"
    event = gateway.advances_for(sid)[-1].event
    assert (event.digits, event.caller, event.called) == ("2", "+919876543210", "+918047112233")


@pytest.mark.parametrize(
    "number", ["09876543210", "+919876543210", "919876543210", "9876543210", "+91 98765 43210"]
)
async def test_numbers_normalised_to_e164(
    client: httpx.AsyncClient, gateway: ScriptedGateway, number: str
) -> None:
    sid = new_sid()
    await passthru(client, {"CallSid": sid, "CallFrom": number})
    assert gateway.advances_for(sid)[0].event.caller == "+919876543210"


async def test_unencoded_plus_still_parses(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    # A `+` left unencoded in a query string arrives as a space.
    response = await client.get(f"{BASE}/passthru?CallSid={sid}&CallFrom=+919876543210")
    assert response.status_code == 200
    assert gateway.advances_for(sid)[0].event.caller == "+919876543210"


async def test_from_and_to_used_when_callfrom_missing(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    await passthru(client, {"CallSid": sid, "From": "09876543210", "To": "08047112233"})
    event = gateway.advances_for(sid)[0].event
    assert (event.caller, event.called) == ("+919876543210", "+918047112233")


async def test_only_callsid_and_extra_params(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    params = {"CallSid": sid, "flow_id": "228040", "tenant_id": "67291", "Whatever": "x",
              "ForwardedFrom": "null", "ProcessStatus": "null"}
    assert await passthru(client, params) == "say"
    event = gateway.advances_for(sid)[0].event
    assert event.kind == EventKind.resumed
    assert (event.caller, event.called, event.digits, event.dial_status) == (None,) * 4


async def test_literal_null_and_withheld_numbers_are_absent(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    params = {"CallSid": sid, "CallFrom": "anonymous", "DialCallStatus": "null",
              "RecordingUrl": "null", "CustomField": "order-42", "Direction": "outbound-api"}
    assert await passthru(client, params) == "say"
    event = gateway.advances_for(sid)[0].event
    assert event.kind == EventKind.resumed
    assert event.caller is None
    assert (event.custom_field, event.direction) == ("order-42", "outbound")


@pytest.mark.parametrize(
    ("raw", "status"),
    [("completed", DialStatus.completed), ("BUSY", DialStatus.busy),
     ("no-answer", DialStatus.no_answer), ("no_answer", DialStatus.no_answer),
     ("cancelled", DialStatus.canceled), ("something-new", DialStatus.failed)],
)
async def test_dial_status_spellings(
    client: httpx.AsyncClient, gateway: ScriptedGateway, raw: str, status: DialStatus
) -> None:
    sid = new_sid()
    gateway.seed(sid, [SALES], Dialect.exotel)
    await passthru(client, {"CallSid": sid, "DialCallStatus": raw, "DialCallDuration": "oops"})
    event = gateway.advances_for(sid)[-1].event
    assert (event.kind, event.dial_status, event.dial_duration_s) == (
        EventKind.dial_result, status, None
    )


async def test_recording_after_connect_is_a_dial_result(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    gateway.seed(sid, [SALES], Dialect.exotel)
    await passthru(client, {"CallSid": sid, "DialCallStatus": "completed",
                            "RecordingUrl": "https://s3.example.com/r.mp3"})
    event = gateway.advances_for(sid)[-1].event
    assert event.kind == EventKind.dial_result
    assert event.recording_url == "https://s3.example.com/r.mp3"


# --- retries -------------------------------------------------------------------------------------


async def test_retried_passthru_same_update_id_advances_once(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid, clock = new_sid(), Clock()
    await start_call(client, sid, clock)
    pressed = exotel_params(sid, clock, digits='"2"')
    first = await passthru(client, pressed)
    # Same request again, parameters in another order and case: a carrier retry.
    shuffled = {k.lower(): v for k, v in reversed(list(pressed.items()))}
    second = await passthru(client, shuffled)
    assert first == second == "record"
    ids = [a.update_id for a in gateway.advances_for(sid)]
    assert ids[-1] == ids[-2]
    assert ids[-1].startswith(f"{sid}:")
    assert len(set(ids)) == len(ids) - 1
    assert gateway.calls[sid].turn == 3  # welcome, menu, the key press: not four


async def test_new_current_time_is_a_new_turn(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid, clock = new_sid(), Clock()
    await start_call(client, sid, clock)
    ids = [a.update_id for a in gateway.advances_for(sid)]
    assert ids[0] != ids[1]


async def test_without_current_time_a_later_hit_is_still_a_new_turn(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    assert await passthru(client, {"CallSid": sid}) == "say"
    await asyncio.sleep(1.05)
    assert await passthru(client, {"CallSid": sid}) == "gather"
    ids = [a.update_id for a in gateway.advances_for(sid)]
    assert ids[0] != ids[1]


# --- applet endpoints ----------------------------------------------------------------------------


async def test_greeting_head_has_get_headers_and_no_body(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    gateway.seed(sid, [Say(text="Hello there.", loop=2), Play(url=JINGLE)], Dialect.exotel)
    got = await client.get(f"{BASE}/greeting", params={"CallSid": sid})
    head = await client.head(f"{BASE}/greeting", params={"CallSid": sid})
    assert got.status_code == head.status_code == 200
    assert got.text == f"Hello there.\nHello there.\n{JINGLE}"
    assert head.content == b""
    for name in ("content-type", "content-length", "cache-control"):
        assert head.headers[name] == got.headers[name]
    assert got.headers["content-type"] == "text/plain"
    assert int(head.headers["content-length"]) == len(got.content)


async def test_greeting_plays_pause_and_hold_as_silence(
    client: httpx.AsyncClient, gateway: ScriptedGateway, live_server: LiveServer
) -> None:
    sid = new_sid()
    hold = Hold(duration_s=7.5, announcements=[Say(text="Please\nhold.")])
    gateway.seed(sid, [Pause(seconds=2), hold], Dialect.exotel)
    lines = (await client.get(f"{BASE}/greeting", params={"CallSid": sid})).text.splitlines()
    silence = f"{live_server.base_url}{BASE}/silence"
    assert lines == [f"{silence}/2.wav", "Please hold.", f"{silence}/8.wav"]
    wav = await client.get(lines[0])
    assert wav.status_code == 200
    assert wav.headers["content-type"] == "audio/wav"
    assert wav.content[:4] == b"RIFF"
    assert len(wav.content) == 44 + 2 * 8000 * 2


async def test_greeting_hold_with_music(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    gateway.seed(sid, [Hold(duration_s=10, music_url="https://cdn.example.com/moh.wav")],
                 Dialect.exotel)
    body = (await client.get(f"{BASE}/greeting", params={"CallSid": sid})).text
    assert body == "https://cdn.example.com/moh.wav"


@pytest.mark.parametrize("seconds", ["0", "121", "x"])
async def test_silence_bounds(client: httpx.AsyncClient, seconds: str) -> None:
    assert_error(await client.get(f"{BASE}/silence/{seconds}.wav"), 400)


async def test_gather_with_audio_prompt_and_repeat(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    gather = Gather(prompt=[Play(url=JINGLE)], max_digits=4, finish_on_key="",
                    timeout_s=7.5, repeat_prompt=True)
    gateway.seed(sid, [gather], Dialect.exotel)
    body = (await client.get(f"{BASE}/gather", params={"CallSid": sid})).json()
    assert body["gather_prompt"] == body["repeat_gather_prompt"] == {"audio_url": JINGLE}
    assert (body["max_input_digits"], body["finish_on_key"], body["input_timeout"]) == (4, "", 8)
    assert body["repeat_menu"] == 1


async def test_connect_single_number_without_extras(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    gateway.seed(sid, [Dial(numbers=["+919000000001"])], Dialect.exotel)
    body = (await client.get(f"{BASE}/connect", params={"CallSid": sid})).json()
    assert body["destination"] == {"numbers": ["+919000000001"]}
    assert body["record"] is False
    for absent in ("outgoing_phone_number", "parallel_ringing", "start_call_playback"):
        assert absent not in body


async def test_applet_for_another_instruction_is_409(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    gateway.seed(sid, [Say(text="Hi")], Dialect.exotel)
    assert_error(await client.get(f"{BASE}/gather", params={"CallSid": sid}), 409, "say")
    assert_error(await client.get(f"{BASE}/connect", params={"CallSid": sid}), 409)


@pytest.mark.parametrize(
    ("reply", "case"),
    [
        (Reply(instructions=[Say(text="a"), Play(url=JINGLE)]), "say"),
        (Reply(instructions=[Pause(seconds=1)]), "say"),
        (Reply(instructions=[Hold()]), "say"),
        (Reply(instructions=[Gather(prompt=[Say(text="a")])]), "gather"),
        (Reply(instructions=[SALES]), "connect"),
        (Reply(instructions=[Record()]), "record"),
        (Reply(instructions=[Hangup()], final=True), "hangup"),
        (Reply(instructions=[], final=True), "hangup"),
    ],
)
def test_select_case_per_segment(reply: Reply, case: str) -> None:
    assert select_case(reply) == case


# --- status callback -----------------------------------------------------------------------------


async def test_status_callback_json(client: httpx.AsyncClient, gateway: ScriptedGateway) -> None:
    sid, clock = new_sid(), Clock()
    await start_call(client, sid, clock)
    body = {
        "CallSid": sid, "Status": "completed", "From": "09876543210", "To": "08047112233",
        "RecordingUrl": "https://s3.example.com/r.mp3", "ConversationDuration": 31,
        "EventType": "terminal", "Legs": [{"Status": "completed", "OnCallDuration": 20}],
    }
    response = await client.post(f"{BASE}/status", json=body)
    assert response.status_code == 200
    event = gateway.ends[-1]
    assert (event.kind, event.call_sid, event.call_status) == (EventKind.ended, sid, "completed")
    assert (event.caller, event.recording_url) == ("+919876543210", "https://s3.example.com/r.mp3")


async def test_status_callback_form_for_unknown_call_is_still_200(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    response = await client.post(f"{BASE}/status", data={"CallSid": new_sid(), "Status": "busy"})
    assert response.status_code == 200
    assert gateway.ends[-1].call_status == "busy"


async def test_status_callback_get(client: httpx.AsyncClient, gateway: ScriptedGateway) -> None:
    response = await client.get(f"{BASE}/status", params={"CallSid": new_sid()})
    assert response.status_code == 200
    assert gateway.ends[-1].call_status == "completed"


async def test_status_callback_with_nan_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/status", content=b'{"CallSid": "CAnan", "Duration": NaN}',
                                 headers={"content-type": "application/json"})
    assert_error(response, 400, "not valid JSON")


async def test_status_callback_not_stored_is_routed_then_503_for_the_retry(
    client: httpx.AsyncClient, gateway: ScriptedGateway, live_server: LiveServer
) -> None:
    """A database that cannot take the raw callback: the call still ends, and the 503 makes
    Exotel send the callback again (it retries without a 200) so that it is stored then."""

    class Down:
        def begin(self) -> Any:
            raise ConnectionRefusedError("database down")

    sid = new_sid()
    live_server.app.state.sessionmaker = Down()
    try:
        response = await client.post(f"{BASE}/status", json={"CallSid": sid, "Status": "busy"})
    finally:
        del live_server.app.state.sessionmaker
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert "could not be stored" in response.json()["detail"]
    assert (gateway.ends[-1].call_sid, gateway.ends[-1].call_status) == (sid, "busy")


# --- bad input -----------------------------------------------------------------------------------


async def test_wrong_token_is_403_and_reaches_nothing(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    for path in ("passthru", "greeting", "gather", "connect", "status"):
        response = await client.get(f"/api/exotel/not-the-token/{path}", params={"CallSid": sid})
        assert assert_error(response, 403)["error"] == "forbidden"
    assert gateway.advances == [] and gateway.ends == [] and gateway.pending_asked == []


@pytest.mark.parametrize(
    ("params", "mention"),
    [
        ({}, "CallSid"),
        ({"CallSid": ""}, "CallSid"),
        ({"CallSid": "abc$%^"}, "CallSid"),
        ({"CallSid": "a" * 65}, "CallSid"),
        ({"CallSid": "ok1", "digits": '"12a"'}, "digits"),
        ({"CallSid": "ok1", "digits": "1;DROP"}, "digits"),
        ({"CallSid": "ok1", "RecordingUrl": "javascript:alert(1)"}, "RecordingUrl"),
        ({"CallSid": "ok1", "CustomField": "x" * 2000}, "CustomField"),
    ],
)
async def test_bad_passthru_is_400_and_starts_nothing(
    client: httpx.AsyncClient, gateway: ScriptedGateway, params: dict[str, str], mention: str
) -> None:
    assert_error(await client.get(f"{BASE}/passthru", params=params), 400, mention)
    assert gateway.advances == []


async def test_oversized_requests(client: httpx.AsyncClient, gateway: ScriptedGateway) -> None:
    big = "9" * 10_000
    assert_error(await client.get(f"{BASE}/passthru", params={"CallSid": "a1", "x": big}), 413)
    # A 10 kB value in a body under the body limit is named; a body over it is refused whole.
    form = {"CallSid": "a1", "CallFrom": big}
    assert_error(await client.post(f"{BASE}/passthru", data=form), 400, "CallFrom")
    form = {"CallSid": "a1", "a": big, "b": big}
    assert_error(await client.post(f"{BASE}/passthru", data=form), 413)
    short_query = {"CallSid": "a1", "CallFrom": "9" * 2000}
    assert_error(await client.get(f"{BASE}/passthru", params=short_query), 400, "CallFrom")
    assert gateway.advances == []


async def test_malformed_bodies(client: httpx.AsyncClient, gateway: ScriptedGateway) -> None:
    url = f"{BASE}/passthru"
    headers = {"content-type": "application/json"}
    assert_error(await client.post(url, content=b"{not json", headers=headers), 400, "JSON")
    assert_error(await client.post(url, content=b"[1, 2]", headers=headers), 400, "object")
    files = {"f": ("a.txt", b"x")}
    assert_error(await client.post(url, files=files, data={"CallSid": "a"}), 415)
    assert gateway.advances == []


async def test_unknown_call(client: httpx.AsyncClient, gateway: ScriptedGateway) -> None:
    sid = new_sid()
    for path in ("greeting", "gather", "connect"):
        assert_error(await client.get(f"{BASE}/{path}", params={"CallSid": sid}), 404, sid)
    head = await client.head(f"{BASE}/greeting", params={"CallSid": sid})
    assert head.status_code == 404
    # Only a data-less Passthru may start a call; one carrying digits must find it running.
    response = await client.get(f"{BASE}/passthru", params={"CallSid": sid, "digits": '"1"'})
    assert_error(response, 404, sid)
    assert sid not in gateway.calls


async def test_engine_failure_is_503_not_500(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    gateway.explode = RuntimeError("temporal is down")
    response = await client.get(f"{BASE}/passthru", params={"CallSid": new_sid()})
    assert assert_error(response, 503)["error"] == "unavailable"


async def test_no_flow_for_the_number_is_404(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    gateway.explode = LookupError("no published flow answers +918047112233")
    response = await client.get(f"{BASE}/passthru", params={"CallSid": new_sid()})
    assert "no published flow" in assert_error(response, 404)["detail"]
