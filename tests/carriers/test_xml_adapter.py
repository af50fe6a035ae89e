"""The XML dialect at /api/ivr/*: the original curl, auth (Twilio signature, token, dev), verbs."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from carrier_doubles import JINGLE, TWILIO_TOKEN, WEBHOOK_TOKEN, LiveServer, ScriptedGateway
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from api.carriers.xml import ActionUrls, render
from core.config import Env
from core.telephony import (
    Dial,
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

URLS = ActionUrls(base="https://ivr.example.com", turn=4, token="tok")


def new_sid() -> str:
    return f"CA{uuid.uuid4().hex}"


def parse(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    return root


def child(root: ET.Element, tag: str) -> ET.Element:
    found = root.find(tag)
    assert found is not None, f"no <{tag}> in {ET.tostring(root)!r}"
    return found


def action(root: ET.Element, tag: str) -> str:
    return child(root, tag).get("action") or ""


def query(url: str | None) -> dict[str, str]:
    assert url
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def twilio_form(sid: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "From": "+919876543210", "To": "+911234567890",
            "CallStatus": "in-progress", "Direction": "inbound", **extra}


# --- the original curl ---------------------------------------------------------------------------


async def test_original_curl_returns_welcome_response(
    client: httpx.AsyncClient, gateway: ScriptedGateway, live_server: LiveServer
) -> None:
    body = {"CallSid": "test-prod-001", "From": "+919876543210", "To": "+911234567890",
            "CallStatus": "ringing"}
    with live_server.settings(env=Env.dev):
        root = parse(await client.post("/api/ivr/execute", json=body))
    assert [verb.tag for verb in root] == ["Play", "Say", "Gather", "Redirect"]
    assert child(root, "Say").text == "Welcome to the demo line."
    gather = child(root, "Gather")
    assert (child(gather, "Say").text or "").startswith("Press 1")
    assert gather.get("action") == f"{live_server.base_url}/api/ivr/gather?turn=1"
    assert (gather.get("input"), gather.get("numDigits"), gather.get("timeout")) == (
        "dtmf", "1", "5"
    )
    assert child(root, "Redirect").text == gather.get("action")
    advance = gateway.advances_for("test-prod-001")[0]
    assert (advance.update_id, advance.start, advance.event.kind) == (
        "test-prod-001:t0", True, EventKind.started
    )
    assert (advance.event.caller, advance.event.call_status) == ("+919876543210", "ringing")


async def test_form_body_also_accepted(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    url = f"/api/ivr/execute?token={WEBHOOK_TOKEN}"
    root = parse(await client.post(url, data=twilio_form(new_sid())))
    # The token this request came with rides along in every action URL.
    assert query(action(root, "Gather"))["token"] == WEBHOOK_TOKEN


# --- auth -------------------------------------------------------------------------------------


async def test_test_env_refuses_unsigned(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    response = await client.post("/api/ivr/execute", data=twilio_form(new_sid()))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert gateway.advances == []


@pytest.mark.parametrize("how", ["query", "header"])
async def test_webhook_token(client: httpx.AsyncClient, gateway: ScriptedGateway, how: str) -> None:
    sid = new_sid()
    url, headers = "/api/ivr/execute", {}
    if how == "query":
        url += f"?token={WEBHOOK_TOKEN}"
    else:
        headers["X-IVR-Token"] = WEBHOOK_TOKEN
    parse(await client.post(url, data=twilio_form(sid), headers=headers))
    wrong = await client.post("/api/ivr/execute?token=nope", data=twilio_form(new_sid()))
    assert wrong.status_code == 403
    wrong = await client.post(
        "/api/ivr/execute", data=twilio_form(new_sid()), headers={"X-IVR-Token": "nope"}
    )
    assert wrong.status_code == 403
    assert len(gateway.advances) == 1


async def test_wrong_token_refused_even_in_dev(
    client: httpx.AsyncClient, gateway: ScriptedGateway, live_server: LiveServer
) -> None:
    with live_server.settings(env=Env.dev):
        response = await client.post("/api/ivr/execute?token=nope", data=twilio_form(new_sid()))
    assert response.status_code == 403
    assert gateway.advances == []


async def test_twilio_signature(
    client: httpx.AsyncClient, gateway: ScriptedGateway, live_server: LiveServer
) -> None:
    sid = new_sid()
    form = twilio_form(sid)
    path = "/api/ivr/execute?turn=0"
    validator = RequestValidator(TWILIO_TOKEN)
    with live_server.settings(twilio_auth_token=SecretStr(TWILIO_TOKEN)) as settings:
        # Signed over the URL Twilio requested: the public URL, not what uvicorn sees.
        signature = validator.compute_signature(settings.public_url + path, form)
        ok = await client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        parse(ok)
        assert gateway.advances_for(sid)[0].event.carrier == "twilio"

        tampered = {**form, "From": "+919999999999"}
        bad = await client.post(path, data=tampered, headers={"X-Twilio-Signature": signature})
        assert bad.status_code == 403
        assert "Twilio" in bad.json()["detail"]
        forged = await client.post(path, data=form, headers={"X-Twilio-Signature": "AAAA"})
        assert forged.status_code == 403
        unsigned = await client.post(path, data=twilio_form(new_sid()))
        assert unsigned.status_code == 403
    assert len(gateway.advances) == 1


async def test_twilio_signature_through_a_proxy_prefix(
    client: httpx.AsyncClient, gateway: ScriptedGateway, live_server: LiveServer
) -> None:
    sid = new_sid()
    form = twilio_form(sid)
    public = "https://ivr.example.com"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        f"{public}/api/ivr/execute", form
    )
    with live_server.settings(twilio_auth_token=SecretStr(TWILIO_TOKEN), public_url=public):
        root = parse(
            await client.post("/api/ivr/execute", data=form,
                              headers={"X-Twilio-Signature": signature})
        )
    assert action(root, "Gather").startswith(f"{public}/api/ivr/gather")


# --- turns --------------------------------------------------------------------------------------


async def test_call_through_every_endpoint(
    client: httpx.AsyncClient, gateway: ScriptedGateway, live_server: LiveServer
) -> None:
    sid = new_sid()
    post = lambda url, **extra: client.post(url, data=twilio_form(sid, **extra))  # noqa: E731

    root = parse(await post(f"/api/ivr/execute?token={WEBHOOK_TOKEN}"))
    gather_action = action(root, "Gather")

    root = parse(await post(gather_action, Digits="1"))
    assert [verb.tag for verb in root] == ["Say", "Dial"]
    dial = child(root, "Dial")
    assert [n.text for n in dial.findall("Number")] == ["+919000000001", "+919000000002"]
    assert (dial.get("callerId"), dial.get("timeout"), dial.get("timeLimit")) == (
        "+911234567890", "20", "600"
    )
    assert dial.get("record") == "record-from-answer-dual"
    assert query(action(root, "Dial")) == {"turn": "2", "leg": "dial", "token": WEBHOOK_TOKEN}

    root = parse(
        await post(action(root, "Dial"), DialCallStatus="no-answer", DialCallDuration="20")
    )
    assert [verb.tag for verb in root] == ["Say", "Say", "Record", "Redirect"]
    record = child(root, "Record")
    assert (record.get("maxLength"), record.get("finishOnKey"), record.get("playBeep")) == (
        "60", "#", "true"
    )
    assert urlsplit(action(root, "Record")).path == "/api/ivr/recording/callback"

    root = parse(await post(action(root, "Record"), RecordingUrl="https://api.twilio.com/r/RE1"))
    assert [verb.tag for verb in root] == ["Say", "Hangup"]

    ended = await post(f"/api/ivr/callback/status?token={WEBHOOK_TOKEN}", CallStatus="completed")
    assert ended.status_code == 200
    assert gateway.ends[-1].call_status == "completed"

    advances = gateway.advances_for(sid)
    assert [a.update_id for a in advances] == [f"{sid}:t{n}" for n in range(4)]
    assert [a.event.kind for a in advances] == [
        EventKind.started, EventKind.digits, EventKind.dial_result, EventKind.recording
    ]
    assert advances[2].event.dial_status == DialStatus.no_answer
    assert advances[3].event.recording_url == "https://api.twilio.com/r/RE1"


async def test_gather_timeout_hold_and_resume(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    post = lambda url, **extra: client.post(url, data=twilio_form(sid, **extra))  # noqa: E731
    root = parse(await post(f"/api/ivr/execute?token={WEBHOOK_TOKEN}"))
    # Nothing pressed: the carrier follows the Redirect, a gather turn without Digits.
    root = parse(await post(child(root, "Redirect").text))
    assert gateway.advances_for(sid)[-1].event.digits == ""
    assert child(root, "Say").text == "We did not get that."
    root = parse(await post(action(root, "Gather"), Digits="3"))
    assert [verb.tag for verb in root] == ["Say", "Pause", "Redirect"]
    assert child(root, "Pause").get("length") == "5"
    resume = child(root, "Redirect").text
    assert urlsplit(resume).path == "/api/ivr/execute" and query(resume)["turn"] == "3"
    root = parse(await post(resume))
    assert [verb.tag for verb in root] == ["Pause", "Say", "Hangup"]
    assert gateway.advances_for(sid)[-1].event.kind == EventKind.resumed
    assert gateway.advances_for(sid)[-1].start is False
    # The call is over: another webhook is answered with a hang-up.
    root = parse(await post(f"/api/ivr/execute?turn=9&token={WEBHOOK_TOKEN}"))
    assert [verb.tag for verb in root] == ["Hangup"]


async def test_retried_webhook_same_turn_advances_once(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    sid = new_sid()
    post = lambda url, **extra: client.post(url, data=twilio_form(sid, **extra))  # noqa: E731
    root = parse(await post(f"/api/ivr/execute?token={WEBHOOK_TOKEN}"))
    gather_action = action(root, "Gather")
    first = (await post(gather_action, Digits="2")).text
    again = (await post(gather_action, Digits="2")).text
    assert first == again
    assert gateway.calls[sid].turn == 2
    assert [a.update_id for a in gateway.advances_for(sid)][-2:] == [f"{sid}:t1"] * 2


async def test_bad_xml_requests(client: httpx.AsyncClient, gateway: ScriptedGateway) -> None:
    token = f"token={WEBHOOK_TOKEN}"
    missing = await client.post(f"/api/ivr/execute?{token}", data={"From": "+919876543210"})
    assert missing.status_code == 400 and "CallSid" in missing.json()["detail"]
    unknown = await client.post(f"/api/ivr/gather?turn=1&{token}",
                                data=twilio_form(new_sid(), Digits="1"))
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    garbage = await client.post(f"/api/ivr/gather?turn=1&{token}",
                                data=twilio_form(new_sid(), Digits="1 OR 1=1"))
    assert garbage.status_code == 400 and "Digits" in garbage.json()["detail"]
    bad_turn = await client.post(f"/api/ivr/gather?turn=-1&{token}", data=twilio_form(new_sid()))
    assert bad_turn.status_code == 400 and "turn" in bad_turn.json()["detail"]
    huge = await client.post(f"/api/ivr/execute?{token}",
                             data=twilio_form(new_sid(), Extra="x" * 10_000))
    assert huge.status_code == 400 and "Extra" in huge.json()["detail"]
    # Only the well-formed webhook for an unknown call reached the engine, and started nothing.
    assert len(gateway.advances) == 1 and gateway.calls == {}


async def test_status_callback_progress_is_ignored(
    client: httpx.AsyncClient, gateway: ScriptedGateway
) -> None:
    url = f"/api/ivr/callback/status?token={WEBHOOK_TOKEN}"
    ringing = await client.post(url, data=twilio_form(new_sid(), CallStatus="ringing"))
    assert ringing.status_code == 200 and gateway.ends == []
    busy = await client.post(url, data=twilio_form(new_sid(), CallStatus="busy"))
    assert busy.status_code == 200 and gateway.ends[-1].call_status == "busy"


# --- rendering ------------------------------------------------------------------------------------


def verbs(reply: Reply) -> ET.Element:
    return ET.fromstring(render(reply, URLS))


def test_render_say_play_pause() -> None:
    root = verbs(Reply(instructions=[
        Say(text="Namaste", voice="Polly.Aditi", language="hi-IN", loop=2),
        Play(url=JINGLE, loop=3),
        Pause(seconds=1.2),
    ]))
    say, play, pause, redirect = list(root)
    assert (say.tag, say.text, say.get("voice"), say.get("language"), say.get("loop")) == (
        "Say", "Namaste", "Polly.Aditi", "hi-IN", "2"
    )
    assert (play.tag, play.text, play.get("loop")) == ("Play", JINGLE, "3")
    assert (pause.tag, pause.get("length")) == ("Pause", "2")
    # Prompts alone would let the carrier hang up: come back for the rest.
    assert redirect.tag == "Redirect"
    assert redirect.text == "https://ivr.example.com/api/ivr/execute?turn=4&token=tok"


def test_render_final_prompts_end_with_hangup() -> None:
    root = verbs(Reply(instructions=[Say(text="Bye")], final=True))
    assert [verb.tag for verb in root] == ["Say", "Hangup"]


def test_render_gather_with_repeat_and_mixed_prompt() -> None:
    gather = Gather(prompt=[Play(url=JINGLE), Say(text="Enter your PIN")], max_digits=4,
                    finish_on_key="", timeout_s=2.5, repeat_prompt=True)
    root = verbs(Reply(instructions=[gather]))
    assert [verb.tag for verb in root] == ["Gather", "Gather", "Redirect"]
    first = root[0]
    assert [child.tag for child in first] == ["Play", "Say"]
    assert (first.get("numDigits"), first.get("finishOnKey"), first.get("timeout")) == (
        "4", "", "3"
    )
    assert first.get("action") == root[2].text == (
        "https://ivr.example.com/api/ivr/gather?turn=4&token=tok"
    )


def test_render_dial_nobody_is_a_failed_dial() -> None:
    root = verbs(Reply(instructions=[Dial(numbers=[])]))
    assert [verb.tag for verb in root] == ["Redirect"]
    assert query(root[0].text)["DialCallStatus"] == "failed"


def test_render_hold_with_music() -> None:
    hold = Hold(duration_s=15, music_url="https://cdn.example.com/moh.wav",
                announcements=[Say(text="You are number 2 in the queue.")])
    root = verbs(Reply(instructions=[hold]))
    assert [verb.tag for verb in root] == ["Say", "Play", "Redirect"]


def test_render_record_and_hangup() -> None:
    root = verbs(Reply(instructions=[Record(max_length_s=30, play_beep=False)]))
    assert [verb.tag for verb in root] == ["Record", "Redirect"]
    assert root[0].get("playBeep") == "false"
    assert query(root[1].text)["turn"] == "4"
    assert [v.tag for v in verbs(Reply(instructions=[Hangup()], final=True))] == ["Hangup"]
    assert [v.tag for v in ET.fromstring(render(None, URLS))] == ["Hangup"]
