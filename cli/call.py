"""`ivr call`: place a simulated phone call against a running API, as the carrier would.

Exotel dialect (default): Passthru -> read `select` -> fetch that applet's URL (Greeting with
HEAD then GET, Programmable Gather, Programmable Connect; a record is a simulated voicemail, a
hangup ends the call) -> print what the caller hears -> back to Passthru with what the applet
produced, spelt as Exotel spells it: `digits="2"` in quotes, `DialCallStatus`/`DialWhomNumber`/
`DialCallDuration` after a connect, `RecordingUrl` after a voicemail, numbers as `0XXXXXXXXXX`,
`CurrentTime` in IST. The call's clock advances by what the caller listens to, as it would on a
real line, so `CurrentTime` tells one turn from the next.

XML dialect: POST `/api/ivr/execute`, then follow the `<Response>` verbs and their action URLs
as a TwiML carrier does (form posts, `Digits`, `DialCallStatus`, `RecordingUrl`).

`SimulatedCall` is the reusable part (load tests, integration tests); `call_command` is the CLI.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
import typer

from cli.main import app
from core.phone import mask, national_digits, to_e164
from core.telephony import TTS_CHARS_PER_S, DialStatus

IST = timezone(timedelta(hours=5, minutes=30), "IST")
EXOTEL_TIME = "%Y-%m-%d %H:%M:%S"
EXOTEL_ENDTIME_PLACEHOLDER = "1970-01-01 05:30:00"
AUDIO_GUESS_S = 3.0  # how long an audio prompt of unknown length is taken to play
TALK_TIME_S = 42  # an answered simulated dial talks this long
RECORDING_HOST = "https://recordings.ivr-simulator.invalid"

Keypad = Callable[[list[str]], Awaitable[str | None]]


class CarrierDialect(StrEnum):
    exotel = "exotel"
    xml = "xml"


class Outcome(StrEnum):
    completed = "completed"  # the API hung up
    error = "error"  # a webhook failed or answered something a carrier could not run
    hung_up = "hung_up"  # the simulated caller hung up (--hangup-after)
    turn_limit = "turn_limit"  # still going after --max-turns


class ExitCode(IntEnum):
    completed = 0
    error = 1
    hung_up = 2
    turn_limit = 3


EXIT_CODES = {outcome: ExitCode[outcome.value] for outcome in Outcome}


@dataclass
class Turn:
    """One webhook that advanced the call, and what the caller did with its answer."""

    turn: int
    webhook: str  # passthru | execute | gather | dial | recording | resume
    status: int
    ms: float  # latency of the advancing webhook
    first: bool
    applet: str | None = None  # Exotel select, or the XML verbs run
    heard: list[str] = field(default_factory=list)
    pressed: str | None = None
    dial: dict[str, Any] | None = None
    recording_url: str | None = None
    applet_ms: float | None = None  # Exotel: latency of the applet fetch(es)


@dataclass
class CallResult:
    call_sid: str
    dialect: str
    outcome: Outcome
    turns: list[Turn]
    error: str | None = None
    status_sent: bool = False

    @property
    def exit_code(self) -> int:
        return int(EXIT_CODES[self.outcome])

    def to_json(self) -> dict[str, Any]:
        return {
            "callSid": self.call_sid,
            "dialect": self.dialect,
            "outcome": self.outcome.value,
            "exitCode": self.exit_code,
            "error": self.error,
            "statusSent": self.status_sent,
            "turns": [
                {_camel(k): v for k, v in asdict(turn).items()} for turn in self.turns
            ],
        }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _CallFailed(Exception):
    pass


class _CallOver(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def _listen_s(lines: Sequence[str]) -> float:
    """Roughly how long the caller listens to these prompts."""
    total = 0.0
    for line in lines:
        if line.startswith(("http://", "https://")):
            stem = line.rsplit("/", 1)[-1]
            # Our own silence URLs say their length: /silence/4.wav
            total += float(stem[:-4]) if stem.endswith(".wav") and stem[:-4].isdigit() else (
                AUDIO_GUESS_S
            )
        else:
            total += max(1.0, len(line) / TTS_CHARS_PER_S)
    return total


class SimulatedCall:
    """One simulated call through the carrier webhooks of a running API.

    `digits` are pressed at successive gathers; when they run out, `keypad` is asked (the CLI
    reads the terminal), and without one the caller presses nothing (the gather times out).
    `echo` receives a human-readable line for everything that happens.
    """

    def __init__(
        self,
        api: str,
        token: str,
        *,
        caller: str = "+919876543210",
        called: str = "+911234567890",
        call_sid: str | None = None,
        dialect: CarrierDialect | str = CarrierDialect.exotel,
        digits: Sequence[str] = (),
        keypad: Keypad | None = None,
        dial_outcome: DialStatus = DialStatus.completed,
        hangup_after: int | None = None,
        send_status: bool = True,
        think_s: float = 0.0,
        max_turns: int = 50,
        timeout_s: float = 10.0,
        twilio_auth_token: str | None = None,
        client: httpx.AsyncClient | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        caller_e164, called_e164 = to_e164(caller), to_e164(called)
        if caller_e164 is None or called_e164 is None:
            raise ValueError("caller and called must be phone numbers")
        self.api = api.rstrip("/")
        self.token = token
        self.caller = caller_e164
        self.called = called_e164
        self.call_sid = call_sid or f"sim{uuid.uuid4().hex}"
        self.dialect = CarrierDialect(dialect)
        self.digits = list(digits)
        self.keypad = keypad
        self.dial_outcome = dial_outcome
        self.hangup_after = hangup_after
        self.send_status = send_status
        self.think_s = think_s
        self.max_turns = max_turns
        self.timeout_s = timeout_s
        self.twilio_auth_token = twilio_auth_token
        self._client = client
        self._echo = echo or (lambda _line: None)
        self.turns: list[Turn] = []
        self.started = datetime.now(IST).replace(microsecond=0)
        self.clock = self.started  # the call's own time: advances by what the caller hears
        self._recordings = 0

    # --- shared ----------------------------------------------------------------------------

    async def run(self) -> CallResult:
        """Place the call and return how it went (never raises for a misbehaving API)."""
        client = self._client or httpx.AsyncClient(timeout=self.timeout_s)
        error: str | None = None
        try:
            runner = self._run_exotel if self.dialect == CarrierDialect.exotel else self._run_xml
            outcome = await runner(client)
        except _CallFailed as exc:
            outcome, error = Outcome.error, str(exc)
        except httpx.HTTPError as exc:
            outcome, error = Outcome.error, f"{type(exc).__name__}: {exc}"
        except (ValueError, TypeError, KeyError) as exc:
            # An applet answer with the right shape but unusable values.
            outcome, error = Outcome.error, f"unusable answer: {type(exc).__name__}: {exc}"
        status_sent = False
        if outcome == Outcome.completed and self.send_status:
            try:
                await self._send_status(client)
                status_sent = True
            except (_CallFailed, httpx.HTTPError) as exc:
                outcome, error = Outcome.error, f"status callback: {exc}"
        if self._client is None:
            await client.aclose()
        if error:
            self._echo(f"  ! {error}")
        self._echo(f"call {self.call_sid}: {outcome.value}")
        return CallResult(
            self.call_sid, self.dialect.value, outcome, self.turns, error, status_sent
        )

    def _tick(self, seconds: float) -> None:
        self.clock += timedelta(seconds=max(1, math.ceil(seconds)))

    def _hear(self, turn: Turn, lines: Sequence[str]) -> None:
        for line in lines:
            is_audio = line.startswith(("http://", "https://"))
            self._echo(f"  caller hears {'audio ' if is_audio else ''}{line!r}")
        turn.heard.extend(lines)

    async def _press(self, prompt: list[str]) -> str:
        if self.digits:
            keys = self.digits.pop(0)
        elif self.keypad is not None:
            keys = (await self.keypad(prompt)) or ""
        else:
            keys = ""
        self._echo(f"  caller presses {keys!r}" if keys else "  caller presses nothing")
        return keys

    def _recording_url(self) -> str:
        self._recordings += 1
        return f"{RECORDING_HOST}/{self.call_sid}/{self._recordings}.mp3"

    def _dial(self, numbers: Sequence[str], ring_s: int, record: bool) -> dict[str, Any]:
        """What happens when the agent's phone rings, per --answer / --no-answer / --busy."""
        status = self.dial_outcome
        duration = {DialStatus.completed: 5 + TALK_TIME_S, DialStatus.busy: 2}.get(status, ring_s)
        result: dict[str, Any] = {
            "status": status.value,
            "number": numbers[0] if numbers else None,
            "durationS": duration,
            "recordingUrl": None,
        }
        if record and status == DialStatus.completed:
            result["recordingUrl"] = self._recording_url()
        who = ", ".join(mask(n) for n in numbers) or "nobody"
        self._echo(f"  dialling {who}: {status.value} after {duration} s")
        self._tick(duration)
        return result

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        webhook: str,
        **kwargs: Any,
    ) -> tuple[httpx.Response, float]:
        began = time.perf_counter()
        response = await client.request(method, url, **kwargs)
        elapsed_ms = round((time.perf_counter() - began) * 1000, 2)
        if response.status_code >= 400:
            raise _CallFailed(f"{webhook} answered {response.status_code}: {response.text[:300]}")
        return response, elapsed_ms

    def _turn_allowed(self, number: int) -> None:
        if self.hangup_after is not None and number > self.hangup_after:
            self._echo(f"  caller hangs up silently after {self.hangup_after} turn(s)")
            raise _CallOver(Outcome.hung_up)
        if number > self.max_turns:
            raise _CallOver(Outcome.turn_limit)

    async def _think(self) -> None:
        if self.think_s > 0:
            await asyncio.sleep(self.think_s)

    # --- Exotel ----------------------------------------------------------------------------

    def _exotel_params(self) -> dict[str, str]:
        caller, called = national_digits(self.caller), national_digits(self.called)
        return {
            "CallSid": self.call_sid,
            "CallFrom": caller,
            "CallTo": called,
            "From": caller,
            "To": called,
            "Direction": "incoming",
            "CallType": "call-attempt",
            "CallStatus": "in-progress",
            "Created": self.started.strftime("%a, %d %b %Y %H:%M:%S"),
            "StartTime": self.started.strftime(EXOTEL_TIME),
            "CurrentTime": self.clock.strftime(EXOTEL_TIME),
            "EndTime": EXOTEL_ENDTIME_PLACEHOLDER,
            "flow_id": "simulator",
        }

    async def _run_exotel(self, client: httpx.AsyncClient) -> Outcome:
        base = f"{self.api}/api/exotel/{quote(self.token, safe='')}"
        carry: dict[str, str] = {}
        # Exotel repeats the keys of the last gather on every later Passthru request.
        pressed: dict[str, str] = {}
        number = 0
        try:
            while True:
                number += 1
                self._turn_allowed(number)
                response, ms = await self._request(
                    client,
                    "GET",
                    f"{base}/passthru",
                    webhook="passthru",
                    params={**self._exotel_params(), **pressed, **carry},
                )
                select = self._select(response)
                turn = Turn(number, "passthru", response.status_code, ms, number == 1, select)
                self.turns.append(turn)
                self._echo(f"[turn {number}] passthru -> {select} ({ms:.0f} ms)")
                carry = await self._exotel_applet(client, base, select, turn)
                if "digits" in carry:
                    pressed = {"digits": carry["digits"]}
                await self._think()
        except _CallOver as over:
            return over.outcome

    @staticmethod
    def _select(response: httpx.Response) -> str:
        try:
            select = json.loads(response.text)["select"]
        except (ValueError, KeyError, TypeError) as exc:
            body = response.text[:200]
            raise _CallFailed(f"passthru body is not {{'select': ...}}: {body!r}") from exc
        if select not in ("say", "gather", "connect", "record", "hangup"):
            raise _CallFailed(f"passthru selected an unknown case {select!r}")
        return str(select)

    async def _exotel_applet(
        self, client: httpx.AsyncClient, base: str, select: str, turn: Turn
    ) -> dict[str, str]:
        """Run the selected applet; returns the parameters the next Passthru carries."""
        params = self._exotel_params()
        versioned = {"Exotel-Version": "1.0"}
        if select == "hangup":
            self._echo("  call ends")
            raise _CallOver(Outcome.completed)
        if select == "record":
            url = self._recording_url()
            self._echo("  caller leaves a voicemail")
            self._tick(10)
            turn.recording_url = url
            return {"RecordingUrl": url}
        if select == "say":
            # Exotel checks a greeting URL with HEAD before it GETs it.
            head, head_ms = await self._request(
                client, "HEAD", f"{base}/greeting", webhook="greeting", params=params
            )
            got, get_ms = await self._request(
                client, "GET", f"{base}/greeting", webhook="greeting", params=params
            )
            if head.headers.get("content-type") != got.headers.get("content-type"):
                raise _CallFailed("greeting HEAD and GET answer different content types")
            lines = [line for line in got.text.splitlines() if line.strip()]
            turn.applet_ms = head_ms + get_ms
            self._hear(turn, lines)
            self._tick(_listen_s(lines))
            return {}
        if select == "gather":
            got, turn.applet_ms = await self._request(
                client, "GET", f"{base}/gather", webhook="gather", params=params, headers=versioned
            )
            config = self._json(got, "gather")
            prompt = config.get("gather_prompt") or {}
            lines = [str(prompt.get("text") or prompt.get("audio_url") or "")]
            self._hear(turn, lines)
            keys = await self._press(lines)
            finish = str(config.get("finish_on_key") or "")
            if finish and finish in keys:
                keys = keys.split(finish, 1)[0]
            keys = keys[: int(config.get("max_input_digits") or 255)]
            turn.pressed = keys
            self._tick(_listen_s(lines) + (2 if keys else float(config.get("input_timeout") or 5)))
            return {"digits": f'"{keys}"'}
        got, turn.applet_ms = await self._request(
            client, "GET", f"{base}/connect", webhook="connect", params=params, headers=versioned
        )
        config = self._json(got, "connect")
        numbers = [str(n) for n in (config.get("destination") or {}).get("numbers") or []]
        result = self._dial(
            numbers, int(config.get("max_ringing_duration") or 30), bool(config.get("record"))
        )
        turn.dial = result
        carry = {
            "DialCallStatus": result["status"],
            "DialCallDuration": str(result["durationS"]),
            "CallType": "completed" if result["status"] == "completed" else "incomplete",
        }
        if result["number"]:
            carry["DialWhomNumber"] = national_digits(result["number"])
        if result["recordingUrl"]:
            carry["RecordingUrl"] = result["recordingUrl"]
        return carry

    @staticmethod
    def _json(response: httpx.Response, applet: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise _CallFailed(f"{applet} answered non-JSON: {response.text[:200]!r}") from exc
        if not isinstance(body, dict):
            raise _CallFailed(f"{applet} answered JSON that is not an object")
        return body

    # --- XML -------------------------------------------------------------------------------

    def _xml_params(self, status: str = "in-progress") -> dict[str, str]:
        return {
            "CallSid": self.call_sid,
            "AccountSid": "ACsimulator",
            "From": self.caller,
            "To": self.called,
            "Caller": self.caller,
            "Called": self.called,
            "CallStatus": status,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }

    def _rebase(self, url: str) -> str:
        """Action URLs name the API's public address; send them to the one we were given."""
        target, api = urlsplit(url), urlsplit(self.api)
        return urlunsplit((api.scheme, api.netloc, target.path, target.query, ""))

    def _signed(self, url: str, form: dict[str, str]) -> dict[str, str]:
        if not self.twilio_auth_token:
            return {}
        from twilio.request_validator import RequestValidator

        signature = RequestValidator(self.twilio_auth_token).compute_signature(url, form)
        return {"X-Twilio-Signature": signature}

    async def _run_xml(self, client: httpx.AsyncClient) -> Outcome:
        url: str | None = f"{self.api}/api/ivr/execute?{urlencode({'token': self.token})}"
        form = self._xml_params("ringing")
        webhook = "execute"
        number = 0
        try:
            while url is not None:
                number += 1
                self._turn_allowed(number)
                response, ms = await self._request(
                    client,
                    "POST",
                    self._rebase(url),
                    webhook=webhook,
                    data=form,
                    headers=self._signed(url, form),
                )
                turn = Turn(number, webhook, response.status_code, ms, number == 1)
                self.turns.append(turn)
                self._echo(f"[turn {number}] {webhook} ({ms:.0f} ms)")
                url, webhook, extra = await self._run_verbs(response, turn)
                form = {**self._xml_params(), **extra}
                await self._think()
        except _CallOver as over:
            return over.outcome
        self._echo("  the document ended: the carrier hangs up")
        return Outcome.completed

    async def _run_verbs(
        self, response: httpx.Response, turn: Turn
    ) -> tuple[str | None, str, dict[str, str]]:
        """Play a `<Response>`; returns where the carrier goes next and what it posts."""
        try:
            root = ET.fromstring(response.text)  # noqa: S314  (our own API's answer)
        except ET.ParseError as exc:
            raise _CallFailed(f"not XML: {response.text[:200]!r}") from exc
        if root.tag != "Response":
            raise _CallFailed(f"root element is <{root.tag}>, not <Response>")
        turn.applet = " ".join(verb.tag for verb in root)
        for verb in root:
            if verb.tag in ("Say", "Play"):
                self._hear(turn, [(verb.text or "").strip()] * int(verb.get("loop") or 1))
                self._tick(_listen_s(turn.heard[-1:]))
            elif verb.tag == "Pause":
                self._echo(f"  (pause {verb.get('length') or 1} s)")
                self._tick(float(verb.get("length") or 1))
            elif verb.tag == "Gather":
                prompts = [(child.text or "").strip() for child in verb]
                self._hear(turn, prompts)
                keys = await self._press(prompts)
                finish = verb.get("finishOnKey", "#")
                if finish and finish in keys:
                    keys = keys.split(finish, 1)[0]
                if verb.get("numDigits"):
                    keys = keys[: int(verb.get("numDigits") or 1)]
                if keys:
                    turn.pressed = keys
                    return verb.get("action"), "gather", {"Digits": keys}
                # No input: a TwiML carrier moves on to the next verb.
            elif verb.tag == "Dial":
                numbers = [(n.text or "").strip() for n in verb if n.tag == "Number"]
                recorded = (verb.get("record") or "").startswith("record-from")
                result = self._dial(numbers, int(verb.get("timeout") or 30), recorded)
                turn.dial = result
                if verb.get("action"):
                    extra = {
                        "DialCallStatus": result["status"],
                        "DialCallDuration": str(result["durationS"]),
                        "DialCallSid": f"{self.call_sid}-leg",
                    }
                    if result["recordingUrl"]:
                        extra["RecordingUrl"] = result["recordingUrl"]
                    return verb.get("action"), "dial", extra
            elif verb.tag == "Record":
                recording = self._recording_url()
                self._echo("  caller leaves a voicemail")
                self._tick(10)
                turn.recording_url = recording
                extra = {"RecordingUrl": recording, "RecordingDuration": "10"}
                return verb.get("action"), "recording", extra
            elif verb.tag == "Redirect":
                return (verb.text or "").strip(), "resume", {}
            elif verb.tag in ("Hangup", "Reject"):
                self._echo("  call ends")
                raise _CallOver(Outcome.completed)
            else:
                raise _CallFailed(f"unknown verb <{verb.tag}>")
        return None, "", {}

    # --- the end ---------------------------------------------------------------------------

    async def _send_status(self, client: httpx.AsyncClient) -> None:
        seconds = int((self.clock - self.started).total_seconds())
        if self.dialect == CarrierDialect.exotel:
            form = {
                "CallSid": self.call_sid,
                "Status": "completed",
                "EventType": "terminal",
                "From": national_digits(self.caller),
                "To": national_digits(self.called),
                "Direction": "inbound",
                "DateCreated": self.started.strftime(EXOTEL_TIME),
                "DateUpdated": self.clock.strftime(EXOTEL_TIME),
                "StartTime": self.started.strftime(EXOTEL_TIME),
                "EndTime": self.clock.strftime(EXOTEL_TIME),
                "ConversationDuration": str(seconds),
            }
            url = f"{self.api}/api/exotel/{quote(self.token, safe='')}/status"
            await self._request(client, "POST", url, webhook="status", data=form)
        else:
            form = {**self._xml_params("completed"), "CallDuration": str(seconds)}
            url = f"{self.api}/api/ivr/callback/status?{urlencode({'token': self.token})}"
            await self._request(
                client, "POST", url, webhook="status", data=form, headers=self._signed(url, form)
            )
        self._echo("  status callback sent: completed")


# --- the command ---------------------------------------------------------------------------------


async def _terminal_keypad(prompt: list[str]) -> str | None:
    line = await asyncio.to_thread(input, "  keys (Enter for none)> ")
    return line.strip()


def _default_token() -> str:
    from cli.main import load_settings

    return load_settings().webhook_token.get_secret_value()


def _twilio_token() -> str | None:
    from cli.main import load_settings

    token = load_settings().twilio_auth_token
    return token.get_secret_value() if token is not None else None


CALL_EPILOG = (
    "Exit codes: 0 the call completed (the API hung up); 1 an error (a webhook failed or "
    "answered something a carrier could not run); 2 the simulated caller hung up "
    "(--hangup-after); 3 still going after --max-turns."
)


@app.command("call", epilog=CALL_EPILOG)
def call_command(
    api: Annotated[str, typer.Option(help="Base URL of the running API.")] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option(help="Webhook token (default: IVR_WEBHOOK_TOKEN).")
    ] = None,
    caller: Annotated[str, typer.Option("--from", help="Caller's number.")] = "+919876543210",
    called: Annotated[str, typer.Option("--to", help="Number called.")] = "+911234567890",
    call_sid: Annotated[str | None, typer.Option("--call-sid", help="Default: random.")] = None,
    dialect: Annotated[
        CarrierDialect, typer.Option(help="exotel: the universal app; xml: /api/ivr/* TwiML.")
    ] = CarrierDialect.exotel,
    digits: Annotated[
        str | None,
        typer.Option(
            help="Keys for successive gathers, comma-separated (e.g. 1,2). When they run out: "
            "asked on a terminal, else nothing is pressed."
        ),
    ] = None,
    answer: Annotated[
        bool, typer.Option("--answer/--no-answer", help="Whether dialled agents answer.")
    ] = True,
    busy: Annotated[bool, typer.Option("--busy", help="Dialled agents are busy.")] = False,
    hangup_after: Annotated[
        int | None,
        typer.Option(min=1, help="Hang up silently after N turns (no further webhooks)."),
    ] = None,
    status: Annotated[
        bool,
        typer.Option(
            "--status/--no-status",
            help="Send the final status callback (Exotel sends none for inbound flows).",
        ),
    ] = True,
    think: Annotated[float, typer.Option(min=0, help="Seconds to wait between turns.")] = 0.0,
    max_turns: Annotated[int, typer.Option(min=1, help="Give up after this many turns.")] = 50,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON transcript instead of the call.")
    ] = False,
) -> None:
    """Place a simulated call through the carrier webhooks and print what the caller hears."""
    outcome = DialStatus.busy if busy else DialStatus.completed if answer else DialStatus.no_answer
    keys = [d.strip() for d in digits.split(",")] if digits is not None else []
    interactive = digits is None and sys.stdin.isatty() and not json_output
    try:
        call = SimulatedCall(
            api,
            token if token is not None else _default_token(),
            caller=caller,
            called=called,
            call_sid=call_sid,
            dialect=dialect,
            digits=keys,
            keypad=_terminal_keypad if interactive else None,
            dial_outcome=outcome,
            hangup_after=hangup_after,
            send_status=status,
            think_s=think,
            max_turns=max_turns,
            twilio_auth_token=_twilio_token() if dialect == CarrierDialect.xml else None,
            echo=None if json_output else typer.echo,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    result = asyncio.run(call.run())
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
    raise typer.Exit(result.exit_code)
