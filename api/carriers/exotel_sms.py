"""Exotel SMS delivery reports: `/api/exotel/{token}/sms-status`, stored raw in sms_callbacks.

Exotel posts the report (form data; JSON accepted too) once the SMS reaches a terminal state
(`sent`, `failed`, `failed_dnd`), possibly more than once. Each report is kept as it came,
linked to the callback the SMS was sent for (from its `CustomField`, else from the row written
when it was sent), and published as an `sms:status` event.
"""

from __future__ import annotations

import re

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.carriers import params as p
from api.carriers.callback_status import raw_payload
from api.carriers.exotel import require_token
from core import events
from core.phone import mask
from core.repositories import callbacks as repo

log = structlog.get_logger(__name__)

SMS_SID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SMS_FIELD_RE = re.compile(r"^cb:(\d{1,18}):sms:[a-z_]{1,32}$")
SMS_STATUSES = frozenset(
    {"queued", "sending", "submitted", "sent", "failed_dnd", "failed", "delivered", "undelivered"}
)

router = APIRouter(
    prefix="/api/exotel/{token}",
    tags=["carrier: exotel"],
    route_class=p.CarrierRoute,
    dependencies=[Depends(require_token)],
)


@p.each_method(router, "/sms-status", ["GET", "POST"])
async def exotel_sms_status(request: Request) -> JSONResponse:
    """SMS delivery report (form or JSON): stored raw; a quick 200 once it parses."""
    params = await p.read_params(request)
    sid = params.text("SmsSid", "Sid")
    if sid is None:
        raise p.bad_request("SmsSid is required")
    if not SMS_SID_RE.fullmatch(sid):
        raise p.bad_request("SmsSid must be 1-64 letters, digits, '-' or '_'")
    status = (params.text("Status") or "").lower() or None
    if status is not None and status not in SMS_STATUSES:
        raise p.bad_request(f"Status must be one of {', '.join(sorted(SMS_STATUSES))}")
    field = params.text("CustomField")
    match = _SMS_FIELD_RE.match(field or "")
    callback_id = int(match.group(1)) if match else None
    to_number = p.phone(params, "To")
    sessionmaker = request.app.state.sessionmaker
    async with sessionmaker.begin() as session:
        if callback_id is None:
            callback_id = await repo.sms_callback_for(session, sid)
        await repo.record_sms(
            session,
            sms_sid=sid,
            to_number=to_number,
            from_number=p.phone(params, "From"),
            status=status,
            detailed_status=params.text("DetailedStatus"),
            payload={"direction": "report", **raw_payload(request, params)},
            callback_id=callback_id,
        )
    redis = getattr(request.app.state, "redis", None)
    if redis is not None:
        event = {"smsSid": sid, "status": status, "to": mask(to_number),
                 "callbackId": callback_id, "detailedStatus": params.text("DetailedStatus")}
        try:
            await redis.publish(
                events.EVENTS_CHANNEL, events.envelope("sms:status", events.ANALYTICS_ROOM, event)
            )
        except Exception as exc:
            log.warning("event_not_published", event_name="sms:status", error=str(exc))
    log.info("exotel_sms_status", sms_sid=sid, status=status, to=mask(to_number),
             callback_id=callback_id)
    return JSONResponse({"received": True})
