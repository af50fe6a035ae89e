"""`ivr call` end to end against the adapters and the scripted gateway, both dialects."""

from __future__ import annotations

import json

import pytest
from carrier_doubles import WEBHOOK_TOKEN, LiveServer, ScriptedGateway
from typer.testing import CliRunner

from cli.call import CallResult, Outcome, SimulatedCall
from cli.main import app
from core.telephony import DialStatus, EventKind


async def place(live_server: LiveServer, **options: object) -> CallResult:
    lines: list[str] = []
    call = SimulatedCall(live_server.base_url, WEBHOOK_TOKEN, echo=lines.append, **options)  # type: ignore[arg-type]
    result = await call.run()
    assert lines[-1].endswith(result.outcome.value)
    return result


def heard(result: CallResult) -> list[str]:
    return [line for turn in result.turns for line in turn.heard]


@pytest.mark.parametrize("dialect", ["exotel", "xml"])
async def test_answered_dial(
    live_server: LiveServer, gateway: ScriptedGateway, dialect: str
) -> None:
    result = await place(live_server, dialect=dialect, digits=["1"])
    assert (result.outcome, result.exit_code, result.status_sent) == (Outcome.completed, 0, True)
    said = heard(result)
    assert "Welcome to the demo line." in said
    assert "Connecting you to sales." in said and said[-1] == "Thank you for calling."
    dial = next(turn.dial for turn in result.turns if turn.dial)
    assert dial is not None and dial["status"] == "completed" and dial["recordingUrl"]
    events = [a.event for a in gateway.advances_for(result.call_sid)]
    pressed = next(e for e in events if e.kind == EventKind.digits)
    assert pressed.digits == "1"  # sent as "1" in quotes on Exotel, unquoted by the adapter
    dialled = next(e for e in events if e.kind == EventKind.dial_result)
    assert dialled.dial_status == DialStatus.completed
    assert dialled.recording_url == dial["recordingUrl"]
    assert events[0].caller == "+919876543210"
    # Every turn was a new update: the simulated clock moves CurrentTime on.
    ids = [a.update_id for a in gateway.advances_for(result.call_sid)]
    assert len(ids) == len(set(ids))
    assert gateway.ends[-1].call_sid == result.call_sid


@pytest.mark.parametrize("dialect", ["exotel", "xml"])
@pytest.mark.parametrize("outcome", [DialStatus.no_answer, DialStatus.busy])
async def test_unanswered_dial_goes_to_voicemail(
    live_server: LiveServer, gateway: ScriptedGateway, dialect: str, outcome: DialStatus
) -> None:
    result = await place(live_server, dialect=dialect, digits=["1"], dial_outcome=outcome)
    assert result.outcome == Outcome.completed
    events = [a.event for a in gateway.advances_for(result.call_sid)]
    dialled = next(e for e in events if e.kind == EventKind.dial_result)
    assert dialled.dial_status == outcome and dialled.recording_url is None
    recorded = next(e for e in events if e.kind == EventKind.recording)
    assert recorded.recording_url and recorded.recording_url.startswith("https://")
    assert heard(result)[-1] == "Thanks for your message."


@pytest.mark.parametrize("dialect", ["exotel", "xml"])
async def test_silence_times_out_twice_then_goodbye(
    live_server: LiveServer, gateway: ScriptedGateway, dialect: str
) -> None:
    result = await place(live_server, dialect=dialect, send_status=False)
    assert result.outcome == Outcome.completed and not result.status_sent
    assert heard(result)[-1] == "Goodbye."
    digits = [a.event.digits for a in gateway.advances_for(result.call_sid)
              if a.event.kind == EventKind.digits]
    assert digits == ["", ""]
    assert gateway.ends == []


@pytest.mark.parametrize("dialect", ["exotel", "xml"])
async def test_hold_then_resume(
    live_server: LiveServer, gateway: ScriptedGateway, dialect: str
) -> None:
    result = await place(live_server, dialect=dialect, digits=["3"])
    assert result.outcome == Outcome.completed
    assert "Please hold." in heard(result)
    assert heard(result)[-1] == "Still there? Goodbye."


@pytest.mark.parametrize("dialect", ["exotel", "xml"])
async def test_hangup_after_is_silent(
    live_server: LiveServer, gateway: ScriptedGateway, dialect: str
) -> None:
    result = await place(live_server, dialect=dialect, hangup_after=1)
    assert (result.outcome, result.exit_code, result.status_sent) == (Outcome.hung_up, 2, False)
    assert len(gateway.advances_for(result.call_sid)) == 1
    assert gateway.ends == []


async def test_keypad_used_when_digits_run_out(
    live_server: LiveServer, gateway: ScriptedGateway
) -> None:
    asked: list[list[str]] = []

    async def keypad(prompt: list[str]) -> str:
        asked.append(prompt)
        return "2#"

    result = await place(live_server, keypad=keypad)
    assert result.outcome == Outcome.completed
    assert asked and asked[0][0].startswith("Press 1")
    assert next(t.pressed for t in result.turns if t.pressed) == "2"  # finish key not sent


async def test_wrong_token_is_an_error(live_server: LiveServer, gateway: ScriptedGateway) -> None:
    call = SimulatedCall(live_server.base_url, "wrong-token")
    result = await call.run()
    assert (result.outcome, result.exit_code) == (Outcome.error, 1)
    assert result.error and "403" in result.error


async def test_unreachable_api_is_an_error() -> None:
    result = await SimulatedCall("http://127.0.0.1:9", WEBHOOK_TOKEN, timeout_s=2).run()
    assert result.outcome == Outcome.error


async def test_turn_limit(live_server: LiveServer, gateway: ScriptedGateway) -> None:
    result = await place(live_server, digits=["9", "9", "9", "9"], max_turns=3)
    assert (result.outcome, result.exit_code) == (Outcome.turn_limit, 3)


def test_cli_json_transcript(live_server: LiveServer, gateway: ScriptedGateway) -> None:
    runner = CliRunner()
    args = ["call", "--api", live_server.base_url, "--token", WEBHOOK_TOKEN, "--digits", "1",
            "--busy", "--json", "--call-sid", "cli-json-1", "--from", "09812345678"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # The server runs in this process: skip anything it logged before the transcript.
    transcript, _ = json.JSONDecoder().raw_decode(result.output, result.output.index('{\n  "'))
    assert transcript["callSid"] == "cli-json-1"
    assert transcript["outcome"] == "completed" and transcript["exitCode"] == 0
    assert transcript["turns"][0]["first"] is True
    assert {"turn", "webhook", "status", "ms", "applet", "heard"} <= set(transcript["turns"][0])
    dial = next(t["dial"] for t in transcript["turns"] if t["dial"])
    assert dial["status"] == "busy"
    assert gateway.advances_for("cli-json-1")[0].event.caller == "+919812345678"


def test_cli_prints_the_call_and_exit_codes(
    live_server: LiveServer, gateway: ScriptedGateway
) -> None:
    runner = CliRunner()
    base = ["call", "--api", live_server.base_url, "--token", WEBHOOK_TOKEN]
    spoken = runner.invoke(app, [*base, "--digits", "2", "--dialect", "xml", "--no-status"])
    assert spoken.exit_code == 0, spoken.output
    assert "caller hears 'Welcome to the demo line.'" in spoken.output
    assert "caller presses '2'" in spoken.output
    assert runner.invoke(app, [*base, "--hangup-after", "2"]).exit_code == 2
    assert runner.invoke(app, [*base, "--no-answer", "--digits", "1"]).exit_code == 0
    failed = runner.invoke(app, ["call", "--api", live_server.base_url, "--token", "nope"])
    assert failed.exit_code == 1
    help_text = runner.invoke(app, ["call", "--help"]).output
    assert "Exit codes" in help_text and "--no-answer" in help_text and "--busy" in help_text
