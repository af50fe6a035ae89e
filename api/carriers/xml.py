"""The XML dialect (TwiML, and ExoML-style apps) at the original `/api/ivr/*` paths.

Each webhook gets a `<Response>` that runs up to the first instruction needing the caller,
whose `action` brings the carrier back. Action URLs carry `turn=N` (the N-th webhook of the
call; `/execute` is turn 0), so the update id `{CallSid}:t{N}` is exact: a retried webhook
carries the same turn and never advances the call twice.

Auth: a valid `X-Twilio-Signature` when a Twilio auth token is configured, or the webhook token
(`?token=`, carried into every action URL, or the `X-IVR-Token` header). In env=dev a request
with neither is let through with a warning, so the original curl example works as-is.
"""

from __future__ import annotations

import hmac
import math
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Gather as TwimlGather
from twilio.twiml.voice_response import VoiceResponse

from api.carriers import params as p
from api.carriers.callback_status import store_status
from api.carriers.gateway import CallGateway, CallGatewayDep, CallOver, UnknownCall, deliver_end
from core.config import Env, Settings
from core.errors import Forbidden, NotFound
from core.phone import mask
from core.telephony import (
    TERMINAL_KINDS,
    CallEvent,
    Dial,
    Dialect,
    DialStatus,
    EventKind,
    Gather,
    Hangup,
    Hold,
    Instruction,
    Pause,
    Play,
    Record,
    Reply,
    Say,
)

log = structlog.get_logger(__name__)

PREFIX = "/api/ivr"
# Call statuses after which the call is over (Twilio's and Exotel's spellings).
END_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled", "cancelled"})
XML_MEDIA_TYPE = "application/xml"


@dataclass(frozen=True)
class XmlRequest:
    params: p.Params
    carrier: str  # "twilio" when the signature checked out, else "xml"
    token: str | None  # the `?token=` this request came with, carried into action URLs


def _signed_url(request: Request, settings: Settings) -> str:
    """The URL as the carrier requested it (behind a proxy, not what uvicorn sees)."""
    query = request.url.query
    return settings.public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


def authenticate(request: Request, params: p.Params, settings: Settings) -> str:
    """Which carrier sent this, if it may: a Twilio signature, the webhook token, or dev mode."""
    signature = request.headers.get("x-twilio-signature")
    twilio_token = settings.twilio_auth_token
    if twilio_token is not None and twilio_token.get_secret_value() and signature:
        validator = RequestValidator(twilio_token.get_secret_value())
        form = ImmutableMultiDict(params.body_pairs)
        if validator.validate(_signed_url(request, settings), form, signature):
            return "twilio"
        raise Forbidden("X-Twilio-Signature does not match this request")
    given = request.query_params.get("token") or request.headers.get("x-ivr-token")
    if given:
        expected = settings.webhook_token.get_secret_value()
        if hmac.compare_digest(given.encode(), expected.encode()):
            return "xml"
        raise Forbidden("wrong webhook token")
    if settings.env == Env.dev:
        log.warning("xml_webhook_unauthenticated_allowed_in_dev", path=request.url.path)
        return "xml"
    raise Forbidden("unsigned webhook: send X-Twilio-Signature or the webhook token")


async def xml_request(request: Request) -> XmlRequest:
    settings = p.carrier_settings(request)
    params = await p.read_params(request)
    carrier = authenticate(request, params, settings)
    return XmlRequest(params=params, carrier=carrier, token=request.query_params.get("token"))


XmlCall = Annotated[XmlRequest, Depends(xml_request)]

router = APIRouter(prefix=PREFIX, tags=["carrier: xml"], route_class=p.CarrierRoute)


# --- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionUrls:
    """Where each verb sends the carrier next; all of them name the same next turn."""

    base: str
    turn: int
    token: str | None

    def _url(self, path: str, **extra: str) -> str:
        query: dict[str, Any] = {"turn": self.turn, **extra}
        if self.token:
            query["token"] = self.token
        return f"{self.base}{PREFIX}{path}?{urlencode(query)}"

    @property
    def resume(self) -> str:
        return self._url("/execute")

    @property
    def gather(self) -> str:
        return self._url("/gather")

    @property
    def dial(self) -> str:
        return self._url("/callback/status", leg="dial")

    @property
    def recording(self) -> str:
        return self._url("/recording/callback")


def _prompt(target: VoiceResponse | TwimlGather, item: Say | Play) -> None:
    loop = item.loop if item.loop > 1 else None
    if isinstance(item, Say):
        target.say(item.text, voice=item.voice, language=item.language, loop=loop)
    else:
        target.play(item.url, loop=loop)


def _gather(response: VoiceResponse, item: Gather, urls: ActionUrls) -> None:
    # Spoken once more if nothing is pressed, when the flow asks for it (Exotel's repeat).
    for _ in range(2 if item.repeat_prompt else 1):
        verb = response.gather(
            input="dtmf",
            num_digits=item.max_digits,
            finish_on_key=item.finish_on_key,
            timeout=math.ceil(item.timeout_s),
            action=urls.gather,
            method="POST",
        )
        for prompt in item.prompt:
            _prompt(verb, prompt)
    # Nothing pressed: the carrier falls through to here, a gather turn with no digits.
    response.redirect(urls.gather, method="POST")


def _dial(response: VoiceResponse, item: Dial, urls: ActionUrls) -> None:
    if not item.numbers:
        # Dialling nobody is an immediate failed dial, as Exotel's empty `numbers` is.
        response.redirect(f"{urls.dial}&DialCallStatus=failed", method="POST")
        return
    verb = response.dial(
        action=urls.dial,
        method="POST",
        caller_id=item.caller_id,
        timeout=item.ring_timeout_s,
        time_limit=item.time_limit_s,
        record="record-from-answer-dual" if item.record else None,
    )
    for number in item.numbers:
        verb.number(number)


def _verb(response: VoiceResponse, item: Instruction, urls: ActionUrls) -> None:
    if isinstance(item, Say | Play):
        _prompt(response, item)
    elif isinstance(item, Pause):
        response.pause(length=math.ceil(item.seconds))
    elif isinstance(item, Gather):
        _gather(response, item, urls)
    elif isinstance(item, Dial):
        _dial(response, item, urls)
    elif isinstance(item, Record):
        for prompt in item.prompt:
            _prompt(response, prompt)
        response.record(
            action=urls.recording,
            method="POST",
            max_length=item.max_length_s,
            finish_on_key=item.finish_on_key,
            play_beep=item.play_beep,
        )
        # Silence records nothing and the carrier moves on: a recording turn with no URL.
        response.redirect(urls.recording, method="POST")
    elif isinstance(item, Hold):
        for prompt in item.announcements:
            _prompt(response, prompt)
        if item.music_url:
            response.play(item.music_url)
        else:
            response.pause(length=math.ceil(item.duration_s))
        response.redirect(urls.resume, method="POST")
    elif isinstance(item, Hangup):
        response.hangup()


def render(reply: Reply | None, urls: ActionUrls) -> str:
    """A `<Response>` for one segment; it always ends in a hang-up or a way back to us."""
    response = VoiceResponse()
    if reply is None:  # the call is over
        response.hangup()
        return str(response)
    for item in reply.instructions:
        _verb(response, item, urls)
    last = reply.instructions[-1] if reply.instructions else None
    if last is None or last.kind not in TERMINAL_KINDS:
        # A carrier that runs out of verbs hangs up: come back for the rest instead.
        if reply.final:
            response.hangup()
        else:
            response.redirect(urls.resume, method="POST")
    return str(response)


def _xml(body: str) -> Response:
    return Response(body, media_type=XML_MEDIA_TYPE)


# --- turns ---------------------------------------------------------------------------------------


def _event(call: XmlRequest, kind: EventKind, **fields: Any) -> CallEvent:
    params = call.params
    status = params.text("CallStatus")
    return CallEvent(
        kind=kind,
        call_sid=p.call_sid(params),
        carrier=call.carrier,
        caller=p.phone(params, "From", "Caller", "CallFrom"),
        called=p.phone(params, "To", "Called", "CallTo"),
        direction=p.direction(params),
        call_status=status.lower()[:32] if status else None,
        received_at_ms=int(time.time() * 1000),
        **fields,
    )


async def _advance(
    request: Request,
    call: XmlRequest,
    gateway: CallGateway,
    event: CallEvent,
    *,
    start: bool = False,
) -> Response:
    turn = p.turn(call.params)
    if turn is None and start:
        turn = 0
    # Without a turn (a URL set by hand) fall back to the request's fingerprint.
    update_id = (
        f"{event.call_sid}:t{turn}"
        if turn is not None
        else p.fingerprint(event.call_sid, call.params, exclude=("token",))
    )
    reply: Reply | None
    try:
        reply = await gateway.advance(event, update_id=update_id, dialect=Dialect.xml, start=start)
    except CallOver:
        reply = None
    except UnknownCall as err:
        raise NotFound(f"no running call {event.call_sid}") from err
    next_turn = turn + 1 if turn is not None else (reply.turn if reply else 0) + 1
    base = p.carrier_settings(request).public_url.rstrip("/")
    log.info(
        "xml_turn",
        call_sid=event.call_sid,
        kind=event.kind.value,
        caller=mask(event.caller),
        update_id=update_id,
        verbs=[i.kind for i in reply.instructions] if reply else ["hangup"],
    )
    return _xml(render(reply, ActionUrls(base=base, turn=next_turn, token=call.token)))


# --- routes --------------------------------------------------------------------------------------


@router.post("/execute")
async def ivr_execute(request: Request, call: XmlCall, gateway: CallGatewayDep) -> Response:
    """A call's first webhook (turn 0), or the return after a prompt-only or hold segment."""
    first = (p.turn(call.params) or 0) == 0
    event = _event(call, EventKind.started if first else EventKind.resumed)
    return await _advance(request, call, gateway, event, start=first)


@router.post("/gather")
async def ivr_gather(request: Request, call: XmlCall, gateway: CallGatewayDep) -> Response:
    """Keys pressed at a Gather; no `Digits` means the gather timed out."""
    pressed = p.digits(call.params, "Digits", "digits")
    event = _event(call, EventKind.digits, digits=pressed or "")
    return await _advance(request, call, gateway, event)


@router.post("/callback/status")
async def ivr_status(request: Request, call: XmlCall, gateway: CallGatewayDep) -> Response:
    """Dial result (a Dial's action, `leg=dial`) or the call's status callback."""
    params = call.params
    dial_status = p.dial_status(params, "DialCallStatus")
    if params.text("leg") == "dial" or (dial_status is not None and p.turn(params) is not None):
        event = _event(
            call,
            EventKind.dial_result,
            dial_status=dial_status or DialStatus.failed,
            dial_number=p.phone(params, "DialWhomNumber"),
            dial_duration_s=p.seconds(params, "DialCallDuration"),
            recording_url=p.url(params, "RecordingUrl"),
        )
        return await _advance(request, call, gateway, event)
    sid = p.call_sid(params)
    stored = await store_status(request, params, carrier=call.carrier)  # every one, raw
    status = (params.text("CallStatus", "Status") or "").lower()
    if status in END_STATUSES:
        event = _event(call, EventKind.ended)
        await deliver_end(gateway, event)
        log.info("xml_call_ended", call_sid=sid, status=status, caller=mask(event.caller))
    if not stored:  # the carrier sends it again on a non-2xx
        raise p.CarrierUnavailable("the status callback could not be stored; send it again")
    return _xml(str(VoiceResponse()))


@router.post("/recording/callback")
async def ivr_recording(request: Request, call: XmlCall, gateway: CallGatewayDep) -> Response:
    """A Record's action: the recording's URL (none if the caller left no message)."""
    event = _event(call, EventKind.recording, recording_url=p.url(call.params, "RecordingUrl"))
    return await _advance(request, call, gateway, event)
