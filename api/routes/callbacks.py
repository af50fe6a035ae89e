"""Callbacks REST: schedule a call back to a number (into a flow, through an agent, or through
a queue), list and read them with their attempts, reschedule, cancel.

Each callback is a `CallbackWorkflow` (id `callback-{id}`) that owns its status; the API
creates the row, starts the workflow once, and asks the workflow to reschedule (update) or
cancel (signal). `POST` honours an `Idempotency-Key` header: the same key and body return the
callback created the first time (200), the same key with another body is a 409.
Permissions: reading needs `callbacks:view`, changing `callbacks:schedule` (manager and above).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import AwareDatetime, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from activities.callbacks import start_callback_workflow
from api.deps import AuditDep, RequirePermission, SessionDep, SettingsDep
from core.callbacks import (
    CANCEL_SIGNAL,
    MAX_ATTEMPTS_LIMIT,
    MAX_RETRY_DELAY_S,
    MAX_SCHEDULE_AHEAD,
    RESCHEDULE_UPDATE,
    TERMINAL_STATUSES,
    CallbackMode,
    CallbackStart,
    CallbackState,
    RescheduleRequest,
)
from core.config import Settings
from core.db.models import CALLBACK_STATUSES, BusinessHours, VoiceCallback
from core.errors import AppError, Conflict, InvalidInput
from core.phone import to_e164
from core.repositories import callbacks as repo
from core.schemas import CamelModel, ErrorOut, InputModel
from core.temporal import callback_workflow_id

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/callbacks", tags=["callbacks"])

Viewer = RequirePermission("callbacks:view")
Scheduler = RequirePermission("callbacks:schedule")
CallbackId = Annotated[int, Path(ge=1, le=2**63 - 1)]
RefId = Annotated[int, Field(ge=1, le=2**31 - 1)]

# A time this far in the past still counts as "now" (clocks and request latency).
PAST_TOLERANCE = timedelta(seconds=60)
CANCEL_WAIT_S = 5.0
MAX_LIST_LIMIT = 200


class SchedulingUnavailable(AppError):
    code = "scheduling_unavailable"
    status = 503
    default_detail = "the workflow service is unavailable; retry with the same Idempotency-Key"


# --- bodies ----------------------------------------------------------------------------------


class CallbackIn(InputModel):
    phone_number: str = Field(min_length=1, max_length=32, description="E.164 or Indian format")
    scheduled_at: AwareDatetime | None = Field(
        default=None, description="when to call (ISO 8601 with offset); or asap"
    )
    asap: bool = False
    queue_id: RefId | None = None
    flow_id: RefId | None = None
    agent_id: RefId | None = None
    note: str | None = Field(default=None, max_length=1000)
    max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS_LIMIT)
    retry_delay_seconds: int = Field(default=300, ge=0, le=MAX_RETRY_DELAY_S)
    business_hours_id: RefId | None = Field(
        default=None, description="dial only while these business hours are open"
    )
    send_sms: bool = Field(default=False, description='SMS "we will call you back at …"')

    @model_validator(mode="after")
    def _one_target_one_time(self) -> CallbackIn:
        targets = [n for n in ("queueId", "flowId", "agentId")
                   if getattr(self, _snake(n)) is not None]
        if len(targets) != 1:
            raise ValueError("give exactly one of queueId, flowId or agentId")
        if self.asap == (self.scheduled_at is not None):
            raise ValueError("give either scheduledAt or asap: true")
        return self


class RescheduleIn(InputModel):
    scheduled_at: AwareDatetime | None = None
    asap: bool = False
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)

    @model_validator(mode="after")
    def _one_time(self) -> RescheduleIn:
        if self.asap == (self.scheduled_at is not None):
            raise ValueError("give either scheduledAt or asap: true")
        return self


class AttemptOut(CamelModel):
    number: int
    status: str | None = None
    call_sid: str | None = None
    agent_id: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    reason: str | None = None


class CallbackOut(CamelModel):
    id: int
    phone_number: str
    status: str
    scheduled_at: datetime | None
    asap: bool
    queue_id: int | None
    flow_id: int | None
    agent_id: int | None
    queue_position: int | None
    source_call_sid: str | None
    note: str | None
    max_attempts: int
    retry_delay_seconds: int
    attempt_count: int
    last_error: str | None
    workflow_id: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class CallbackDetailOut(CallbackOut):
    attempts: list[AttemptOut]
    carrier_event_count: int
    cancel_requested: bool = False


class CallbackPage(CamelModel):
    items: list[CallbackOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
_ONE: dict[int | str, dict[str, Any]] = {**_ERRORS, 404: {"model": ErrorOut}}
_CHANGE: dict[int | str, dict[str, Any]] = {
    **_ONE, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut},
}


# --- helpers ---------------------------------------------------------------------------------


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _out(row: VoiceCallback) -> dict[str, Any]:
    return {
        "id": row.id,
        "phone_number": row.phone_number,
        "status": row.status,
        "scheduled_at": row.scheduled_at,
        "asap": row.asap,
        "queue_id": row.queue_id,
        "flow_id": row.flow_id,
        "agent_id": row.agent_id,
        "queue_position": row.queue_position,
        "source_call_sid": row.source_call_sid,
        "note": row.note,
        "max_attempts": row.max_attempts,
        "retry_delay_seconds": row.retry_delay_s,
        "attempt_count": len(row.attempts or []),
        "last_error": row.last_error,
        "workflow_id": row.workflow_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "completed_at": row.completed_at,
    }


def _detail(row: VoiceCallback, cancel_requested: bool = False) -> CallbackDetailOut:
    attempts = [
        AttemptOut.model_validate(a) for a in row.attempts or [] if isinstance(a, dict)
    ]
    return CallbackDetailOut(
        **_out(row), attempts=attempts, carrier_event_count=len(row.carrier_events or []),
        cancel_requested=cancel_requested,
    )


def _summary(row: VoiceCallback) -> dict[str, Any]:
    return {
        "phone_number": row.phone_number, "status": row.status,
        "scheduled_at": row.scheduled_at, "asap": row.asap, "queue_id": row.queue_id,
        "flow_id": row.flow_id, "agent_id": row.agent_id, "max_attempts": row.max_attempts,
    }


def _temporal(request: Request) -> Any:
    client = getattr(request.app.state, "temporal", None)
    if client is None:
        raise SchedulingUnavailable()
    return client


def _check_time(at: datetime | None, field: str) -> None:
    if at is None:
        return
    now = datetime.now(UTC)
    if at < now - PAST_TOLERANCE:
        raise InvalidInput(f"body.{field}: {at.isoformat()} is in the past")
    if at > now + MAX_SCHEDULE_AHEAD:
        raise InvalidInput(
            f"body.{field}: at most {MAX_SCHEDULE_AHEAD.days} days ahead"
        )


def _start(
    row: VoiceCallback, settings: Settings, business_hours_id: int | None, send_sms: bool
) -> CallbackStart:
    mode = (CallbackMode.queue if row.queue_id is not None
            else CallbackMode.agent if row.agent_id is not None else CallbackMode.flow)
    return CallbackStart(
        callback_id=row.id, phone_number=row.phone_number, mode=mode, flow_id=row.flow_id,
        agent_id=row.agent_id, queue_id=row.queue_id, queue_position=row.queue_position,
        scheduled_at=None if row.asap else row.scheduled_at,
        max_attempts=row.max_attempts, retry_delay_s=row.retry_delay_s,
        business_hours_id=business_hours_id, send_sms=send_sms, note=row.note,
        ring_timeout_s=settings.callback_ring_timeout_s,
        time_limit_s=settings.callback_time_limit_s,
        status_grace_s=settings.callback_status_grace_s,
    )


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        before = data["before"]
        if not isinstance(before, int) or before < 1:
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as err:
        raise InvalidInput("query.cursor: not a cursor this list handed out", status=400) from err
    return before


async def _load(session: AsyncSession, callback_id: int) -> VoiceCallback:
    return await repo.get(session, callback_id)


# --- routes ----------------------------------------------------------------------------------


@router.post("", status_code=201, response_model=CallbackDetailOut, responses=_CHANGE)
async def create_callback(
    body: CallbackIn,
    request: Request,
    response: Response,
    user: Scheduler,
    session: SessionDep,
    settings: SettingsDep,
    audit: AuditDep,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
               description="a retried POST with the same key and body creates nothing new"),
    ] = None,
) -> CallbackDetailOut:
    """Schedule a callback (ASAP or at a time; into a flow, through an agent or a queue)."""
    phone = to_e164(body.phone_number)
    if phone is None:
        raise InvalidInput("body.phoneNumber: not a valid phone number")
    _check_time(body.scheduled_at, "scheduledAt")
    bad = await repo.check_references(
        session, flow_id=body.flow_id, agent_id=body.agent_id, queue_id=body.queue_id
    )
    if bad is not None:
        raise InvalidInput(f"body.{bad}: no such {bad.split(' ')[0].removesuffix('Id')}")
    if body.business_hours_id is not None and (
        await session.get(BusinessHours, body.business_hours_id) is None
    ):
        raise InvalidInput("body.businessHoursId: no such business hours")
    row, created = await repo.create(
        session,
        repo.NewCallback(
            phone_number=phone,
            scheduled_at=body.scheduled_at.astimezone(UTC) if body.scheduled_at else None,
            asap=body.asap,
            queue_id=body.queue_id,
            flow_id=body.flow_id,
            agent_id=body.agent_id,
            note=body.note,
            max_attempts=body.max_attempts,
            retry_delay_s=body.retry_delay_seconds,
            idempotency_key=idempotency_key,
            request_hash=repo.request_hash(body.model_dump(mode="json")),
            created_by=user.id,
        ),
    )
    if created:
        await audit.record("callback.create", "callback", row.id, after=_summary(row))
    await session.commit()
    start = _start(row, settings, body.business_hours_id, body.send_sms)
    try:
        started = await start_callback_workflow(
            _temporal(request), settings, start, row.workflow_id or callback_workflow_id(row.id)
        )
    except SchedulingUnavailable:
        raise
    except Exception as err:
        raise SchedulingUnavailable() from err
    if created and not started:
        # A new row whose workflow id already ran: the Temporal namespace holds another
        # database's callbacks. Never let that pass silently (the callback would never dial).
        log.error("callback_workflow_id_taken", callback_id=row.id)
        raise Conflict(f"workflow {row.workflow_id} already exists in Temporal; this database "
                       "and the Temporal namespace do not belong together")
    if not created:
        response.status_code = 200
    await session.refresh(row)
    return _detail(row)


@router.get("", response_model=CallbackPage, responses={**_ERRORS, 400: {"model": ErrorOut}})
async def list_callbacks(
    _: Viewer,
    session: SessionDep,
    status: Annotated[
        list[str] | None, Query(description="one or more statuses (repeat or comma-separate)")
    ] = None,
    queue_id: Annotated[int | None, Query(alias="queueId", ge=1, le=2**31 - 1)] = None,
    date_from: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    date_to: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CallbackPage:
    """List callbacks, newest first (filters: status, due-time range, queue)."""
    statuses = [s.strip() for raw in status or [] for s in raw.split(",") if s.strip()]
    unknown = sorted(set(statuses) - set(CALLBACK_STATUSES))
    if unknown:
        raise InvalidInput(
            f"query.status: unknown {', '.join(unknown)} (one of {', '.join(CALLBACK_STATUSES)})"
        )
    if date_from is not None and date_to is not None and date_from >= date_to:
        raise InvalidInput("query.from: must be before query.to")
    rows = await repo.list_callbacks(
        session,
        limit=limit + 1,
        before_id=_decode_cursor(cursor) if cursor else None,
        statuses=statuses,
        queue_id=queue_id,
        scheduled_from=date_from,
        scheduled_to=date_to,
    )
    page, more = rows[:limit], len(rows) > limit
    return CallbackPage(
        items=[CallbackOut(**_out(r)) for r in page],
        next_cursor=_encode_cursor(page[-1].id) if more and page else None,
    )


@router.get("/{callback_id}", response_model=CallbackDetailOut, responses=_ONE)
async def get_callback(
    callback_id: CallbackId, _: Viewer, session: SessionDep
) -> CallbackDetailOut:
    """One callback with its attempts."""
    return _detail(await _load(session, callback_id))


@router.patch("/{callback_id}", response_model=CallbackDetailOut, responses=_CHANGE)
async def reschedule_callback(
    callback_id: CallbackId,
    body: RescheduleIn,
    request: Request,
    _: Scheduler,
    session: SessionDep,
    audit: AuditDep,
) -> CallbackDetailOut:
    """Reschedule a callback that has not finished (a new time or ASAP, optionally more tries)."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    row = await _load(session, callback_id)
    if row.status in TERMINAL_STATUSES:
        raise Conflict(f"callback {callback_id} is {row.status}; it cannot be rescheduled")
    _check_time(body.scheduled_at, "scheduledAt")
    if body.max_attempts is not None and body.max_attempts <= len(row.attempts or []):
        raise InvalidInput(
            f"body.maxAttempts: must be more than the {len(row.attempts or [])} attempts made"
        )
    before = _summary(row)
    handle = _temporal(request).get_workflow_handle(row.workflow_id or callback_workflow_id(row.id))
    try:
        await handle.execute_update(
            RESCHEDULE_UPDATE,
            RescheduleRequest(
                scheduled_at=body.scheduled_at.astimezone(UTC) if body.scheduled_at else None,
                asap=body.asap, max_attempts=body.max_attempts,
            ),
            result_type=CallbackState,
        )
    except WorkflowUpdateFailedError as err:
        cause = getattr(err.cause, "message", None) or str(err)
        raise Conflict(f"callback {callback_id}: {cause}") from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Conflict(f"callback {callback_id} is no longer running") from err
        raise SchedulingUnavailable() from err
    await session.refresh(row)  # the workflow wrote it meanwhile (read committed)
    await audit.record("callback.reschedule", "callback", row.id, before=before,
                       after=_summary(row))
    await session.commit()
    return _detail(row)


@router.delete(
    "/{callback_id}", response_model=CallbackDetailOut, responses={**_CHANGE, 202: {}}
)
async def cancel_callback(
    callback_id: CallbackId,
    request: Request,
    response: Response,
    _: Scheduler,
    session: SessionDep,
    audit: AuditDep,
) -> CallbackDetailOut:
    """Cancel a callback that has not finished (202 while a dial in progress ends)."""
    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError, RPCStatusCode

    row = await _load(session, callback_id)
    if row.status in TERMINAL_STATUSES:
        raise Conflict(f"callback {callback_id} is already {row.status}")
    before = _summary(row)
    handle = _temporal(request).get_workflow_handle(row.workflow_id or callback_workflow_id(row.id))
    try:
        await handle.signal(CANCEL_SIGNAL)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Conflict(f"callback {callback_id} is no longer running") from err
        raise SchedulingUnavailable() from err
    finished = True
    try:
        await asyncio.wait_for(handle.result(), timeout=CANCEL_WAIT_S)
    except (TimeoutError, WorkflowFailureError, RPCError):
        finished = False
    await session.refresh(row)  # the workflow wrote it meanwhile (read committed)
    if not finished or row.status not in TERMINAL_STATUSES:
        response.status_code = 202  # a dial in progress ends first; then it is cancelled
    await audit.record("callback.cancel", "callback", row.id, before=before, after=_summary(row))
    await session.commit()
    return _detail(row, cancel_requested=True)
