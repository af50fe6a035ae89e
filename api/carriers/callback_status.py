"""Status callbacks: every one stored raw, and those of callback calls routed to their workflow.

Every status callback (any call: inbound flows' and the calls placed for callbacks) lands raw
in `carrier_status_events` once, a carrier retry of it inserting nothing (`store_status`); one
the database cannot take makes the endpoint answer 503 after routing it, so that the carrier
sends it again (Exotel retries a callback without a timely 200 up to twice).

A call placed for a callback carries `CustomField=cb:{id}:{attempt}`; Exotel echoes it in the
call's status callback. Such a callback is also appended to `voice_callbacks.carrier_events`
(a carrier retry is stored once) and signalled to `callback-{id}` as `carrier_status`
(`route_callback_status`), which never fails the carrier's request: Exotel wants its 200
within 15 s, and the workflow asks Exotel itself when a status never arrives.
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
from core.repositories import carrier_events as events_repo
from core.temporal import callback_workflow_id

log = structlog.get_logger(__name__)

SIGNAL_TIMEOUT_S = 5.0


STORE_TIMEOUT_S = 5.0


def raw_payload(request: Request, params: p.Params) -> dict[str, Any]:
    """The parameters as the carrier sent them (query and body, original spelling; a JSON
    body whole, nested values included)."""
    body = params.document if params.document is not None else dict(params.body_pairs)
    # `?token=` authenticates the XML endpoints: a secret, never stored.
    query = {k: v for k, v in request.query_params.items() if k != "token"}
    return {**query, **body}


async def store_status(request: Request, params: p.Params, *, carrier: str) -> bool:
    """Keep a status callback raw in carrier_status_events (a retry of it is stored once).

    True when it is stored (now or before) or there is no database to store it in; False when
    the database failed, for the endpoint to answer 503 so that the carrier sends it again.
    """
    sessionmaker = getattr(request.app.state, "sessionmaker", None)
    if sessionmaker is None:
        return True
    sid = p.call_sid(params)
    field = params.text("CustomField")
    parsed = parse_custom_field(field)
    status = (params.text("Status", "CallStatus", "DialCallStatus") or "").lower() or None

    async def write() -> bool:
        async with sessionmaker.begin() as session:
            return await events_repo.record_status_event(
                session, carrier=carrier, call_sid=sid, status=status, custom_field=field,
                callback_id=parsed[0] if parsed else None, payload=raw_payload(request, params),
            )

    try:
        new = await asyncio.wait_for(write(), STORE_TIMEOUT_S)
    except Exception:
        log.exception("status_callback_not_stored", call_sid=sid, status=status)
        return False
    if not new:
        log.info("status_callback_retry_ignored", call_sid=sid, status=status)
    return True


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
