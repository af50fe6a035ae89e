"""A fake Exotel REST API on a real local HTTP server, with Exotel's shapes and errors.

- `GET /v1/Accounts/{sid}/Calls/{CallSid}.json`: call details. Statuses a test scripts per call
  (`statuses`, served in order, the last one repeated) come first; calls this fake placed
  answer with their own state; anything else is a 404 `RestException`.
- `GET /v1/Accounts/{sid}/Calls.json`: bulk call details filtered by `DateCreated`
  (`gte:…;lte:…`), `From`, `To`; like Exotel, calls still in progress are left out.
- `POST /v1/Accounts/{sid}/Calls/connect.json`: places a simulated call. With `Url` (a flow),
  the customer (`From`) is rung and, if `passthru_url` is set, the call is driven into our own
  Exotel webhooks (`Direction=outbound-api`, `CustomField`); with `To`, `From` (the agent) is
  rung first, then bridged. When the call ends (after `call_duration_s`) the `StatusCallback`
  is posted (JSON when asked, form data otherwise), `status_callback_copies` times.
  The outcome per customer number comes from `outcomes` (in order, last repeated; default
  "completed"): completed, no-answer, busy, failed.
  With `walk_flow`, the call goes on through our universal app the way Exotel runs it: each
  Passthru answer's `select` is followed into its applet (greeting, gather with the next of
  `walk_digits`, connect answered with `walk_dial_status`, record leaving a recording) and
  back into the Passthru, until `hangup` or `max_turns`.
- `POST /v1/Accounts/{sid}/Sms/send.json`: records the SMS and answers `SMSMessage`; posts the
  delivery report to `StatusCallback` when `sms_report_status` is set.
- `GET /` lists the calls placed and the SMS sent (for a person watching `ivr dev
  --fake-carrier`); `GET /health` answers once the server is up.
- 401 for wrong credentials; `garbage_next` answers that many requests with a 200 that is not
  JSON; `throttle_next` answers that many requests (any endpoint) with a
  429 first; `throttle_connect` only creates; `fail_after_place` answers that many creates with
  a 500 *after* placing the call (Exotel failed to answer, the call exists);
  `connect_delay_s` holds a create's answer (the call already placed) that long.

Run on its own (what `ivr dev --fake-carrier` does, from the repository root):
`python tests/fakes/fake_exotel.py --port 8010 --api-base http://127.0.0.1:8000` (or
`python -m tests.fakes.fake_exotel …`): it accepts account `--sid` with API key `--api-key`
and the token in FAKE_EXOTEL_API_TOKEN, and drives the calls it places into
`{api-base}/api/exotel/{IVR_WEBHOOK_TOKEN}/passthru`. Secrets come from the environment, never
the command line (`ps` shows that to everyone).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

IST = ZoneInfo("Asia/Kolkata")
_FMT = "%Y-%m-%d %H:%M:%S"
_TERMINAL = ("completed", "no-answer", "busy", "failed", "canceled")


@dataclass
class FakeCall:
    sid: str
    form: dict[str, str]
    outcome: str
    created_at: datetime
    status: str = "in-progress"
    ended_at: datetime | None = None
    passthru: list[dict[str, Any]] = field(default_factory=list)

    @property
    def customer(self) -> str:
        return self.form.get("To") or self.form.get("From", "")

    def details(self) -> dict[str, Any]:
        talk = 42 if self.status == "completed" else 0
        return {
            "Sid": self.sid,
            "ParentCallSid": None,
            "DateCreated": self.created_at.astimezone(IST).strftime(_FMT),
            "DateUpdated": (self.ended_at or self.created_at).astimezone(IST).strftime(_FMT),
            "AccountSid": "fakeacct",
            "To": self.form.get("To") or self.form.get("CallerId"),
            "From": self.form.get("From"),
            "PhoneNumberSid": self.form.get("CallerId"),
            "Status": self.status,
            "StartTime": self.created_at.astimezone(IST).strftime(_FMT),
            "EndTime": (self.ended_at or self.created_at).astimezone(IST).strftime(_FMT),
            "Duration": str(talk + 10),
            "Direction": "outbound-api",
            "CustomField": self.form.get("CustomField"),
            "RecordingUrl": None,
            "Details": {"ConversationDuration": talk},
        }


@dataclass
class FakeExotel:
    sid: str = "fakeacct"
    api_key: str = "fake-key"
    api_token: str = "fake-token"
    statuses: dict[str, list[str]] = field(default_factory=dict)
    throttle_next: int = 0  # answer this many requests with 429 first
    garbage_next: int = 0  # answer this many requests with a 200 that is not JSON
    throttle_connect: int = 0  # answer this many creates with 429 first
    fail_after_place: int = 0  # answer this many creates with 500 after placing the call
    connect_delay_s: float = 0.0
    call_duration_s: float = 0.2
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    passthru_url: str | None = None
    walk_flow: bool = False  # follow the flow past the first Passthru (see the docstring)
    walk_digits: list[str] = field(default_factory=list)  # keys pressed at gathers, in order
    walk_dial_status: str = "completed"  # how a Programmable Connect's dial ends
    walk_pause_s: float = 0.0  # between turns, so that a person can watch the call move
    max_turns: int = 40
    status_callback_copies: int = 1
    list_custom_field: bool = True  # whether the bulk list shows each call's CustomField
    sms_report_status: str | None = "sent"
    requests: list[str] = field(default_factory=list)
    connects: list[dict[str, str]] = field(default_factory=list)
    sms: list[dict[str, str]] = field(default_factory=list)
    status_posts: list[tuple[str, int]] = field(default_factory=list)
    calls: dict[str, FakeCall] = field(default_factory=dict)
    _served: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _outcome_index: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    def placed_for(self, custom_field_prefix: str) -> list[dict[str, str]]:
        """The create requests whose CustomField starts with this (e.g. `cb:7:`)."""
        prefix = custom_field_prefix
        return [c for c in self.connects if c.get("CustomField", "").startswith(prefix)]

    def _authorised(self, request: Request, sid: str) -> bool:
        expected = base64.b64encode(f"{self.api_key}:{self.api_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}" and sid == self.sid

    def _throttled(self) -> bool:
        """429 (or garbage) for this request, as scripted: the caller answers accordingly."""
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return True
        return False

    def _next_outcome(self, number: str) -> str:
        script = self.outcomes.get(number)
        if not script:
            return "completed"
        index = min(self._outcome_index[number], len(script) - 1)
        self._outcome_index[number] += 1
        return script[index]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_call(self, call: FakeCall) -> None:
        """Ring, maybe drive our webhooks, end, then post the status callback."""
        await asyncio.sleep(self.call_duration_s)
        async with httpx.AsyncClient(timeout=10) as http:
            if self.passthru_url and "Url" in call.form and call.outcome == "completed":
                params = {
                    "CallSid": call.sid,
                    "CallFrom": call.form["From"],
                    "CallTo": call.form.get("CallerId", ""),
                    "Direction": "outbound-api",
                    "CustomField": call.form.get("CustomField", ""),
                    "CurrentTime": datetime.now(IST).strftime(_FMT),
                    "CallStatus": "in-progress",
                }
                if self.walk_flow:
                    await self._walk(http, call, params)
                else:
                    with contextlib.suppress(httpx.HTTPError):
                        response = await http.get(self.passthru_url, params=params)
                        call.passthru.append(
                            {"status": response.status_code, "body": response.text}
                        )
            call.status = call.outcome
            call.ended_at = datetime.now(IST)
            url = call.form.get("StatusCallback")
            if not url:
                return
            body = call.details()
            talk = body["Details"]["ConversationDuration"]
            payload = {
                "CallSid": call.sid,
                "EventType": "terminal",
                "Status": call.status,
                "To": body["To"],
                "From": body["From"],
                "Direction": "outbound-api",
                "DateCreated": body["DateCreated"],
                "DateUpdated": body["DateUpdated"],
                "StartTime": body["StartTime"],
                "EndTime": body["EndTime"],
                "ConversationDuration": talk,
                "RecordingUrl": None,
                "CustomField": call.form.get("CustomField"),
                "Legs": [{"Status": call.status, "OnCallDuration": talk}],
            }
            as_json = call.form.get("StatusCallbackContentType") == "application/json"
            for _ in range(self.status_callback_copies):
                try:
                    if as_json:
                        response = await http.post(url, json=payload)
                    else:
                        form = {k: str(v) for k, v in payload.items()
                                if v is not None and not isinstance(v, list)}
                        response = await http.post(url, data=form)
                    self.status_posts.append((url, response.status_code))
                except httpx.HTTPError:
                    self.status_posts.append((url, 0))

    async def _walk(self, http: httpx.AsyncClient, call: FakeCall, base: dict[str, str]) -> None:
        """Run the call through our universal app: Passthru, the applet it selects, back."""
        assert self.passthru_url is not None
        applets = self.passthru_url.rsplit("/passthru", 1)[0]
        digits = iter(self.walk_digits)
        extra: dict[str, str] = {}
        for _ in range(self.max_turns):
            params = {**base, **extra, "CurrentTime": datetime.now(IST).strftime(_FMT)}
            try:
                response = await http.get(self.passthru_url, params=params)
            except httpx.HTTPError as exc:
                call.passthru.append({"status": 0, "body": repr(exc)})
                return
            turn: dict[str, Any] = {"status": response.status_code, "body": response.text}
            call.passthru.append(turn)
            try:
                select = json.loads(response.text)["select"]
            except (ValueError, KeyError, TypeError):
                return  # not the universal app's answer: Exotel would take the error branch
            extra = {}
            query = {"CallSid": call.sid}
            with contextlib.suppress(httpx.HTTPError):
                if select == "say":
                    turn["heard"] = (await http.get(f"{applets}/greeting", params=query)).text
                elif select == "gather":
                    turn["heard"] = (await http.get(f"{applets}/gather", params=query)).json()
                    pressed = next(digits, "")
                    turn["pressed"] = pressed
                    extra = {"digits": f'"{pressed}"'}
                elif select == "connect":
                    dial = (await http.get(f"{applets}/connect", params=query)).json()
                    turn["dialled"] = (dial.get("destination") or {}).get("numbers")
                    answered = self.walk_dial_status == "completed"
                    extra = {"DialCallStatus": self.walk_dial_status,
                             "DialCallDuration": "30" if answered else "0"}
                    if turn["dialled"]:
                        extra["DialWhomNumber"] = str(turn["dialled"][0])
                elif select == "record":
                    extra = {"RecordingUrl": f"https://recordings.fake-exotel.test/{call.sid}.mp3"}
            if select == "hangup":
                return
            if self.walk_pause_s:
                await asyncio.sleep(self.walk_pause_s)

    def summary(self) -> dict[str, Any]:
        """What this fake has done, newest first: calls placed (with their turns) and SMS."""
        calls = sorted(self.calls.values(), key=lambda c: c.created_at, reverse=True)
        return {
            "calls": [
                {"sid": c.sid, "status": c.status, "from": c.form.get("From"),
                 "to": c.form.get("To"), "customField": c.form.get("CustomField"),
                 "createdAt": c.created_at.isoformat(), "turns": c.passthru}
                for c in calls
            ],
            "sms": list(reversed(self.sms)),
            "statusCallbacks": [{"url": url, "status": code} for url, code in self.status_posts],
        }

    async def _report_sms(self, url: str, sms: dict[str, str], sid: str) -> None:
        await asyncio.sleep(0.05)
        form = {"SmsSid": sid, "To": sms["To"], "Status": self.sms_report_status or "sent",
                "SmsUnits": "1", "DetailedStatus": "DELIVERED_TO_HANDSET",
                "DetailedStatusCode": "20005",
                "DateSent": datetime.now(IST).strftime(_FMT)}
        if sms.get("CustomField"):
            form["CustomField"] = sms["CustomField"]
        async with httpx.AsyncClient(timeout=10) as http:
            with contextlib.suppress(httpx.HTTPError):
                await http.post(url, data=form)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def garbage(request: Request, call_next: Any) -> Any:
            if self.garbage_next > 0:
                self.garbage_next -= 1
                return PlainTextResponse("<html>upstream hiccup</html>", 200)
            return await call_next(request)

        @app.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse({"ok": True, "sid": self.sid})

        @app.get("/")
        async def summary() -> JSONResponse:
            return JSONResponse(self.summary())

        @app.get("/v1/Accounts/{sid}/Calls.json")
        async def bulk_calls(sid: str, request: Request) -> JSONResponse:
            self.requests.append("Calls.json")
            if not self._authorised(request, sid):
                return _error(401, "Authentication is required to view this resource.")
            if self._throttled():
                return _error(429, "Too many requests")
            q = request.query_params
            low, high = _range(q.get("DateCreated"))
            found = []
            for call in sorted(self.calls.values(), key=lambda c: c.created_at, reverse=True):
                if call.status not in _TERMINAL:
                    continue  # Exotel's bulk list leaves ongoing calls out
                if (low and call.created_at < low) or (high and call.created_at > high):
                    continue
                if q.get("From") and call.form.get("From") not in q["From"].split(","):
                    continue
                if q.get("To") and call.form.get("To") not in q["To"].split(","):
                    continue
                record = call.details()
                if not self.list_custom_field:
                    record.pop("CustomField")
                found.append(record)
            size = int(q.get("PageSize") or 50)
            return JSONResponse({"Metadata": {"Total": len(found), "PageSize": size},
                                 "Calls": found[:size]})

        @app.get("/v1/Accounts/{sid}/Calls/{call_file}")
        async def call_details(sid: str, call_file: str, request: Request) -> JSONResponse:
            call_sid = call_file.removesuffix(".json")
            self.requests.append(call_sid)
            if not self._authorised(request, sid):
                return _error(401, "Authentication is required to view this resource.")
            if self._throttled():
                return _error(429, "Too many requests")
            script = self.statuses.get(call_sid)
            if not script:
                placed = self.calls.get(call_sid)
                if placed is not None:
                    return JSONResponse({"Call": placed.details()})
                return _error(404, f"Call {call_sid} not found")
            index = min(self._served[call_sid], len(script) - 1)
            self._served[call_sid] += 1
            return JSONResponse(
                {"Call": {"Sid": call_sid, "Status": script[index], "Duration": "42",
                          "StartTime": "2026-11-28 10:00:00", "EndTime": "2026-11-28 10:00:42"}}
            )

        @app.post("/v1/Accounts/{sid}/Calls/connect.json")
        async def connect(sid: str, request: Request) -> JSONResponse:
            self.requests.append("connect")
            if not self._authorised(request, sid):
                return _error(401, "Authentication is required to view this resource.")
            if self._throttled():
                return _error(429, "Too many requests")
            if self.throttle_connect > 0:
                self.throttle_connect -= 1
                return _error(429, "Too many requests")
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            if not form.get("From") or not form.get("CallerId"):
                return _error(400, "From and CallerId are mandatory")
            if bool(form.get("To")) == bool(form.get("Url")):
                return _error(400, "Give To (connect two numbers) or Url (connect to a flow)")
            if not form["From"].lstrip("+").isdigit():
                return _error(400, f"Invalid From number {form['From']}")
            self.connects.append(form)
            call_sid = f"fake{next(self._seq):04d}{uuid.uuid4().hex[:20]}"
            customer = form.get("To") or form["From"]
            call = FakeCall(call_sid, form, self._next_outcome(customer), datetime.now(IST))
            self.calls[call_sid] = call
            self._spawn(self._run_call(call))
            if self.connect_delay_s:
                await asyncio.sleep(self.connect_delay_s)
            if self.fail_after_place > 0:
                self.fail_after_place -= 1
                return _error(500, "Internal Server Error")
            return JSONResponse({"Call": {
                "Sid": call_sid, "Status": "in-progress",
                "DateCreated": call.created_at.strftime(_FMT), "From": form["From"],
                "To": form.get("To") or form["CallerId"], "Direction": "outbound-api",
            }})

        @app.post("/v1/Accounts/{sid}/Sms/send.json")
        async def send_sms(sid: str, request: Request) -> JSONResponse:
            self.requests.append("sms")
            if not self._authorised(request, sid):
                return _error(401, "Authentication is required to view this resource.")
            if self._throttled():
                return _error(429, "Too many requests")
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            if not form.get("From") or not form.get("To") or not form.get("Body"):
                return _error(400, "Invalid Parameters")
            if len(form["Body"]) > 2000:
                return _error(400, "Body is longer than 2000 characters")
            self.sms.append(form)
            sms_sid = f"sms{next(self._seq):04d}{uuid.uuid4().hex[:20]}"
            if form.get("StatusCallback") and self.sms_report_status:
                self._spawn(self._report_sms(form["StatusCallback"], form, sms_sid))
            return JSONResponse({"SMSMessage": {
                "Sid": sms_sid, "Status": "queued", "To": form["To"], "From": form["From"],
                "Body": form["Body"], "DetailedStatus": "PENDING_TO_OPERATOR",
                "DateCreated": datetime.now(IST).strftime(_FMT),
            }})

        return app


def _range(value: str | None) -> tuple[datetime | None, datetime | None]:
    low = high = None
    for part in (value or "").split(";"):
        op, _, when = part.partition(":")
        with contextlib.suppress(ValueError):
            at = datetime.strptime(when.strip(), _FMT).replace(tzinfo=IST)
            if op == "gte":
                low = at
            elif op == "lte":
                high = at
    if low and high and high < low:
        high = low + timedelta(days=1)
    return low, high


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"RestException": {"Status": status, "Message": message}}, status)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fake_exotel", description="A fake Exotel REST API for local development.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-base", required=True,
                        help="our API, whose Exotel webhooks the placed calls drive")
    parser.add_argument("--sid", default="fakeacct", help="the account SID it accepts")
    parser.add_argument("--api-key", default="fake-key", help="the API key it accepts")
    parser.add_argument("--call-duration-s", type=float, default=1.0,
                        help="ringing before a placed call is answered")
    parser.add_argument("--digits", default=os.environ.get("FAKE_EXOTEL_DIGITS", ""),
                        help="keys pressed at the flow's gathers in order, comma-separated "
                        "(1,2); none: every gather times out (env FAKE_EXOTEL_DIGITS)")
    parser.add_argument("--dial-status",
                        default=os.environ.get("FAKE_EXOTEL_DIAL_STATUS", "completed"),
                        choices=("completed", "no-answer", "busy", "failed"),
                        help="how dials to agents end (env FAKE_EXOTEL_DIAL_STATUS)")
    parser.add_argument("--pause-s", type=float, default=0.5,
                        help="pause between a call's turns, to watch it move")
    return parser


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = _parser().parse_args(argv)
    token = os.environ.get("IVR_WEBHOOK_TOKEN")
    if not token:
        sys.exit("fake_exotel: set IVR_WEBHOOK_TOKEN (the token in our Exotel webhook URLs)")
    fake = FakeExotel(
        sid=args.sid,
        api_key=args.api_key,
        api_token=os.environ.get("FAKE_EXOTEL_API_TOKEN", "fake-token"),
        call_duration_s=args.call_duration_s,
        passthru_url=f"{args.api_base.rstrip('/')}/api/exotel/{token}/passthru",
        walk_flow=True,
        walk_digits=[d.strip() for d in args.digits.split(",") if d.strip()],
        walk_dial_status=args.dial_status,
        walk_pause_s=args.pause_s,
    )
    print(f"fake Exotel on http://{args.host}:{args.port} (account {args.sid}); placed calls "
          f"run {args.api_base.rstrip('/')}/api/exotel/…/passthru", flush=True)

    def stopped(signum: int, _frame: object) -> None:
        raise SystemExit(0)  # asked to stop: a clean end, not death by signal

    # uvicorn shuts down gracefully on these, then raises them again to the handler it found.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stopped)
    uvicorn.run(fake.app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
