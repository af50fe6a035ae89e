"""Status callbacks of callback calls: stored raw on the callback, routed to its workflow.

A call placed for a callback carries `CustomField=cb:{id}:{attempt}`; Exotel echoes it in the
call's status callback. The carrier's `/status` endpoint hands every status callback here
first: one that names a callback is appended to `voice_callbacks.carrier_events` (a carrier
retry is stored once) and signalled to `callback-{id}` as `carrier_status`. Nothing here ever
fails the carrier's request: Exotel wants its 200 within 15 s, and the workflow asks Exotel
itself when a status never arrives.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import Request

from api.carriers import params as p
from core.callbacks import CARRIER_STATUS_SIGNAL, CarrierCallStatus, parse_custom_field
from core.repositories import callbacks as repo
from core.temporal import callback_workflow_id

log = structlog.get_logger(__name__)

SIGNAL_TIMEOUT_S = 5.0


def raw_payload(request: Request, params: p.Params) -> dict[str, str]:
    """The parameters as the carrier sent them (query and body, original spelling)."""
    return {**dict(request.query_params), **dict(params.body_pairs)}


def _number(params: p.Params, *names: str) -> float | None:
    value = params.text(*names)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 else None


async def route_callback_status(request: Request, params: p.Params) -> int | None:
    """Store and route a status callback if it belongs to a callback; its id, else None."""
    field = params.text("CustomField")
    parsed = parse_custom_field(field)
    if parsed is None or field is None:
        return None
    callback_id, attempt = parsed
    sid = params.text("CallSid")
    status = (params.text("Status", "CallStatus", "DialCallStatus") or "").lower()[:32]
    event: dict[str, Any] = {
        "receivedAt": datetime.now(UTC).isoformat(),
        "customField": field,
        "attempt": attempt,
        "callSid": sid,
        "status": status,
        "payload": raw_payload(request, params),
    }
    state = request.app.state
    sessionmaker = getattr(state, "sessionmaker", None)
    if sessionmaker is not None:
        try:
            async with sessionmaker.begin() as session:
                await repo.append_carrier_event(session, callback_id, event)
        except Exception:
            log.exception("callback_status_not_stored", callback_id=callback_id)
    client = getattr(state, "temporal", None)
    if client is None or not status:
        log.warning("callback_status_not_routed", callback_id=callback_id, status=status)
        return callback_id
    signal = CarrierCallStatus(
        custom_field=field,
        call_sid=sid,
        status=status,
        duration_s=_number(params, "Duration", "DialCallDuration"),
        conversation_duration_s=_number(params, "ConversationDuration"),
        recording_url=params.text("RecordingUrl"),
    )
    try:
        handle = client.get_workflow_handle(callback_workflow_id(callback_id))
        await asyncio.wait_for(handle.signal(CARRIER_STATUS_SIGNAL, signal), SIGNAL_TIMEOUT_S)
    except Exception as exc:  # finished workflow, Temporal down: the row has the event
        log.info("callback_status_signal_failed", callback_id=callback_id, error=str(exc))
    else:
        log.info("callback_status_routed", callback_id=callback_id, attempt=attempt,
                 status=status)
    return callback_id
