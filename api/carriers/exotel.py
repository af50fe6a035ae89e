"""Exotel's universal app: Passthru picks the applet, the applet URLs read what is pending.

The Exotel flow (see EXOTEL.md) is one loop: Passthru -> Switch Case on `select` -> one of
Greeting / Programmable Gather / Programmable Connect / Voicemail / Hangup -> Passthru. Only
Passthru advances the call; the applet endpoints read the pending reply and never change it,
so any copy of the turn block may call any of them. Exotel does not sign webhooks: the secret
is the `{token}` path segment, compared in constant time.
"""

from __future__ import annotations

import hmac
import io
import json
import math
import time
import wave
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from api.carriers import params as p
from api.carriers.callback_status import route_callback_status, store_status
from api.carriers.gateway import CallGateway, CallGatewayDep, CallOver, UnknownCall, deliver_end
from core.errors import Conflict, Forbidden, NotFound
from core.phone import mask
from core.telephony import (
    CallEvent,
    Dial,
    Dialect,
    EventKind,
    Gather,
    Hold,
    Pause,
    Play,
    Record,
    Reply,
    Say,
)

log = structlog.get_logger(__name__)

# The five case names the Switch Case applet is set up with; never send anything else.
SELECT_CASES = ("say", "gather", "connect", "record", "hangup")
_CASE_BY_KIND = {"gather": "gather", "dial": "connect", "record": "record", "hangup": "hangup"}
MAX_SILENCE_S = 120
SILENCE_RATE_HZ = 8000  # 8 kHz mono 16-bit WAV: the format Exotel plays without converting
_NO_STORE = {"cache-control": "no-store"}

Silence = Callable[[float], str]  # seconds -> URL of that much silence
_Applet = TypeVar("_Applet", Gather, Dial)


async def require_token(token: str, request: Request) -> None:
    """The webhook secret in the path must match, compared in constant time (async only to
    keep FastAPI from running it in a worker thread)."""
    expected = p.carrier_settings(request).webhook_token.get_secret_value()
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("wrong webhook token")


router = APIRouter(
    prefix="/api/exotel/{token}",
    tags=["carrier: exotel"],
    route_class=p.CarrierRoute,
    dependencies=[Depends(require_token)],
)


# --- parsing -------------------------------------------------------------------------------------


def parse_event(params: p.Params) -> CallEvent:
    """A Passthru hit as a CallEvent; the kind says what the previous applet produced."""
    sid = p.call_sid(params)
    pressed = p.digits(params, "digits")
    dial_status = p.dial_status(params, "DialCallStatus")
    recording = p.url(params, "RecordingUrl")
    if pressed is not None:
        kind = EventKind.digits
    elif dial_status is not None:
        kind = EventKind.dial_result
    elif recording is not None:
        kind = EventKind.recording
    else:
        kind = EventKind.resumed
    call_status = params.text("CallStatus")
    return CallEvent(
        kind=kind,
        call_sid=sid,
        carrier="exotel",
        caller=p.phone(params, "CallFrom", "From"),
        called=p.phone(params, "CallTo", "To"),
        direction=p.direction(params),
        digits=pressed,
        dial_status=dial_status,
        dial_number=p.phone(params, "DialWhomNumber"),
        dial_duration_s=p.seconds(params, "DialCallDuration"),
        recording_url=recording,
        call_status=call_status.lower()[:32] if call_status else None,
        custom_field=params.text("CustomField"),
        received_at_ms=int(time.time() * 1000),
    )


# --- rendering -----------------------------------------------------------------------------------


def select_case(reply: Reply) -> str:
    """The Switch Case name for the one applet this segment needs."""
    kinds = [item.kind for item in reply.instructions]
    for kind, case in _CASE_BY_KIND.items():
        if kind in kinds:
            return case
    return "hangup" if reply.final and not kinds else "say"


def silence_url(base: str, token: str, seconds: float) -> str:
    whole = min(MAX_SILENCE_S, max(1, math.ceil(seconds)))
    return f"{base}/api/exotel/{quote(token, safe='')}/silence/{whole}.wav"


def _prompt_lines(prompts: list[Say | Play]) -> list[str]:
    lines: list[str] = []
    for item in prompts:
        if isinstance(item, Say):
            # One line per spoken text: a newline inside it would start a second prompt.
            lines += [" ".join(item.text.split())] * item.loop
        else:
            lines += [item.url] * item.loop
    return lines


def greeting_lines(reply: Reply, silence: Silence) -> list[str]:
    """The Greeting body: one TTS text or audio URL per line, for whatever is pending."""
    lines: list[str] = []
    for item in reply.instructions:
        if isinstance(item, Say | Play):
            lines += _prompt_lines([item])
        elif isinstance(item, Pause):
            lines.append(silence(item.seconds))
        elif isinstance(item, Hold):
            lines += _prompt_lines(item.announcements)
            lines.append(item.music_url or silence(item.duration_s))
        elif isinstance(item, Gather | Record):
            lines += _prompt_lines(item.prompt)
    return lines or [silence(1)]


def applet_prompt(prompts: list[Say | Play], silence: Silence) -> dict[str, str]:
    """Gather's `gather_prompt`: one text or one audio URL (Exotel takes no mix)."""
    texts = _prompt_lines([item for item in prompts if isinstance(item, Say)])
    audio = [item.url for item in prompts if isinstance(item, Play)]
    if texts:
        if audio:
            log.warning("exotel_gather_prompt_audio_dropped", audio_count=len(audio))
        return {"text": " ".join(texts)}
    if audio:
        if len(audio) > 1:
            log.warning("exotel_gather_prompt_audio_dropped", audio_count=len(audio) - 1)
        return {"audio_url": audio[0]}
    return {"audio_url": silence(1)}


def gather_json(gather: Gather, silence: Silence) -> dict[str, Any]:
    prompt = applet_prompt(gather.prompt, silence)
    return {
        "gather_prompt": prompt,
        "max_input_digits": gather.max_digits,
        "finish_on_key": gather.finish_on_key,
        "input_timeout": math.ceil(gather.timeout_s),
        "repeat_menu": 1 if gather.repeat_prompt else 0,
        "repeat_gather_prompt": prompt,
    }


def connect_json(dial: Dial) -> dict[str, Any]:
    body: dict[str, Any] = {
        "fetch_after_attempt": False,
        "destination": {"numbers": list(dial.numbers)},
        "record": dial.record,
        "recording_channels": "dual",
        "max_ringing_duration": dial.ring_timeout_s,
        "max_conversation_duration": dial.time_limit_s,
        "music_on_hold": {"type": "operator_tone"},
    }
    if dial.caller_id:
        body["outgoing_phone_number"] = dial.caller_id
    if len(dial.numbers) > 1:
        # Ring everyone at once, as <Dial> with several <Number>s does (Exotel caps it at 5).
        body["parallel_ringing"] = {
            "activate": True,
            "max_parallel_attempts": min(5, len(dial.numbers)),
        }
    if dial.announce:
        body["start_call_playback"] = {
            "playback_to": "callee",
            "type": "text",
            "value": dial.announce,
        }
    return body


def _text(body: str, *, head: bool = False) -> Response:
    """`text/plain` exactly (Exotel wants nothing else), same headers for HEAD and GET."""
    data = body.encode()
    headers = {"content-type": "text/plain", "content-length": str(len(data)), **_NO_STORE}
    return Response(b"" if head else data, headers=headers)


def _silence_wav(seconds: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SILENCE_RATE_HZ)
        out.writeframes(bytes(2 * SILENCE_RATE_HZ * seconds))
    return buffer.getvalue()


# --- helpers -------------------------------------------------------------------------------------


async def _pending(gateway: CallGateway, params: p.Params) -> tuple[str, Reply]:
    sid = p.call_sid(params)
    try:
        reply = await gateway.pending(sid)
    except (UnknownCall, CallOver) as err:
        raise NotFound(f"no running call {sid}") from err
    if reply is None:
        raise Conflict(f"call {sid} has nothing pending yet")
    return sid, reply


def _pending_item(reply: Reply, sid: str, kind: type[_Applet]) -> _Applet:
    for item in reply.instructions:
        if isinstance(item, kind):
            return item
    waiting = select_case(reply)
    raise Conflict(f"call {sid} is waiting on '{waiting}', not this applet")


def _silence_for(request: Request, token: str) -> Silence:
    base = p.carrier_settings(request).public_url.rstrip("/")
    return lambda seconds: silence_url(base, token, seconds)


# --- routes --------------------------------------------------------------------------------------


@p.each_method(router, "/passthru", ["GET", "POST"])
async def exotel_passthru(request: Request, gateway: CallGatewayDep) -> Response:
    """Advance the call one turn; the body tells the Switch Case which applet runs next."""
    params = await p.read_params(request)
    event = parse_event(params)
    # A hit that brings nothing new is the first of a call or a return from a greeting:
    # update-with-start covers both, and is a no-op start for a running call.
    start = event.kind == EventKind.resumed
    # CurrentTime is what tells one data-less hit from the next; without it, the second it
    # arrived stands in, so a call is never stuck replaying its first answer.
    salt = ""
    if params.text("CurrentTime") is None:
        salt = str(int(time.time()))
        log.warning("exotel_passthru_without_current_time", call_sid=event.call_sid)
    update_id = p.fingerprint(event.call_sid, params, salt=salt)
    turn = None
    fallback = False
    try:
        reply = await gateway.advance(
            event, update_id=update_id, dialect=Dialect.exotel, start=start
        )
        case, turn, fallback = select_case(reply), reply.turn, reply.fallback
    except CallOver:
        case = "hangup"
    except UnknownCall as err:
        raise NotFound(f"no running call {event.call_sid}") from err
    # On the request's one access-log line (api.middleware): a busy line's webhooks are
    # mostly hold polls, and a second line per request was a measurable share of the API.
    structlog.contextvars.bind_contextvars(
        kind=event.kind.value, caller=mask(event.caller), update_id=update_id, select=case,
        turn=turn,
    )
    response = _text(json.dumps({"select": case}))
    if fallback:
        response.headers["X-IVR-Fallback"] = "1"
    return response


@p.each_method(router, "/greeting", ["GET", "HEAD"])
async def exotel_greeting(request: Request, token: str, gateway: CallGatewayDep) -> Response:
    """Greeting applet: the pending prompts, one text or audio URL per line."""
    _, reply = await _pending(gateway, await p.read_params(request))
    lines = greeting_lines(reply, _silence_for(request, token))
    return _text("\n".join(lines), head=request.method == "HEAD")


@router.get("/gather")
async def exotel_gather(request: Request, token: str, gateway: CallGatewayDep) -> JSONResponse:
    """Programmable Gather applet: prompt and key-input settings of the pending gather."""
    sid, reply = await _pending(gateway, await p.read_params(request))
    gather = _pending_item(reply, sid, Gather)
    return JSONResponse(gather_json(gather, _silence_for(request, token)), headers=_NO_STORE)


@router.get("/connect")
async def exotel_connect(request: Request, gateway: CallGatewayDep) -> JSONResponse:
    """Programmable Connect applet: whom to dial for the pending dial, and how."""
    sid, reply = await _pending(gateway, await p.read_params(request))
    dial = _pending_item(reply, sid, Dial)
    log.info("exotel_connect", call_sid=sid, numbers=[mask(n) for n in dial.numbers])
    return JSONResponse(connect_json(dial), headers=_NO_STORE)


@p.each_method(router, "/status", ["GET", "POST"])
async def exotel_status(request: Request, gateway: CallGatewayDep) -> JSONResponse:
    """Status callback (form or JSON): the call is over. Always a quick 200 once it parses."""
    params = await p.read_params(request)
    sid = p.call_sid(params)
    status = params.text("Status", "CallStatus", "DialCallStatus") or "completed"
    event = CallEvent(
        kind=EventKind.ended,
        call_sid=sid,
        carrier="exotel",
        caller=p.phone(params, "From", "CallFrom"),
        called=p.phone(params, "To", "CallTo"),
        direction=p.direction(params),
        recording_url=p.url(params, "RecordingUrl"),
        call_status=status.lower()[:32],
        custom_field=params.text("CustomField"),
        received_at_ms=int(time.time() * 1000),
    )
    stored = await store_status(request, params, carrier="exotel")  # every one, raw
    await route_callback_status(request, params)  # a callback's call: stored and routed too
    await deliver_end(gateway, event)
    log.info("exotel_status", call_sid=sid, status=event.call_status, caller=mask(event.caller))
    if not stored:  # routed, but not kept: Exotel sends it again on a non-200
        raise p.CarrierUnavailable("the status callback could not be stored; send it again")
    return JSONResponse({"received": True})


@p.each_method(router, "/silence/{seconds}.wav", ["GET", "HEAD"])
async def exotel_silence(
    request: Request, seconds: Annotated[int, Path(ge=1, le=MAX_SILENCE_S)]
) -> Response:
    """N seconds of silence: how a pause or a hold without music is played in a Greeting."""
    data = _silence_wav(seconds)
    headers = {
        "content-type": "audio/wav",
        "content-length": str(len(data)),
        "cache-control": "public, max-age=86400",
    }
    return Response(b"" if request.method == "HEAD" else data, headers=headers)
