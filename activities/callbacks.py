"""Activities of CallbackWorkflow: its records, the dial through Exotel, reconciling a dial
whose status never came, business hours, SMS, and the queue's callback offer.

The dial is the one non-idempotent side effect, so it is guarded in three steps: the intent
(`dialRequestedAt` on the attempt) is committed before the request leaves; a retry that finds
the intent without a CallSid never sends again blindly but looks for the call first (status
callbacks already stored for its CustomField, then Exotel's call list); and a create that
Exotel refused (429, 4xx) clears the intent, since such a refusal placed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core import business_hours, events, sms
from core.callbacks import (
    BusinessHoursAnswer,
    BusinessHoursQuery,
    CallbackMode,
    CallbackRecord,
    CallbackRef,
    CallbackStart,
    DialRequest,
    DialResult,
    QueueCallbackRequest,
    ReconcileRequest,
    ReconcileResult,
    SmsRequest,
    SmsResult,
)
from core.config import Settings
from core.db.models import BusinessHours
from core.exotel import CallDetails, ExotelBadRequest, ExotelClient, ExotelError, parse_exotel_time
from core.phone import mask
from core.redis import make_redis
from core.repositories import callbacks as repo

log = structlog.get_logger(__name__)

EVENTS_CHANNEL = events.EVENTS_CHANNEL
# Calls Exotel created this long before our recorded intent still count as ours (clock skew).
CLOCK_SKEW = timedelta(minutes=2)
HEARTBEAT_EVERY_S = 2.0


def callback_status_url(settings: Settings) -> str:
    """Where Exotel posts a callback call's status (the call status endpoint)."""
    token = settings.webhook_token.get_secret_value()
    return f"{settings.public_url.rstrip('/')}/api/exotel/{token}/status"


def sms_status_url(settings: Settings) -> str:
    token = settings.webhook_token.get_secret_value()
    return f"{settings.public_url.rstrip('/')}/api/exotel/{token}/sms-status"


def callback_event(row: Any, event: str) -> dict[str, Any]:
    """The `callback:update` event payload (numbers masked: events reach dashboards)."""
    return {
        "callbackId": row.id,
        "event": event,
        "status": row.status,
        "phoneNumber": mask(row.phone_number),
        "queueId": row.queue_id,
        "flowId": row.flow_id,
        "agentId": row.agent_id,
        "scheduledAt": row.scheduled_at.isoformat() if row.scheduled_at else None,
        "attempts": len(row.attempts or []),
        "maxAttempts": row.max_attempts,
        "lastError": row.last_error,
    }


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while the block runs, so a killed worker's dial is retried within seconds."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class CallbackActivities:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        redis: Redis | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.exotel = ExotelClient(settings, http) if settings.exotel_configured else None
        self._redis = redis
        self._temporal: Any = None

    # --- records and events ----------------------------------------------------------------

    def _events(self) -> Redis | None:
        if self._redis is None and self.settings.redis_url:
            self._redis = make_redis(self.settings.redis_url)
        return self._redis

    async def publish(self, name: str, data: dict[str, Any]) -> None:
        """Publish a live event to managers (the Socket.IO bridge's analytics room); never
        fails the activity (the database is the record)."""
        redis = self._events()
        if redis is None:
            return
        try:
            await redis.publish(EVENTS_CHANNEL, events.envelope(name, events.ANALYTICS_ROOM, data))
        except Exception as exc:  # Redis down: the dashboard misses one update, nothing else
            log.warning("event_not_published", event_name=name, error=str(exc))

    @activity.defn(name="callback_record")
    async def callback_record(self, rec: CallbackRecord) -> None:
        """Write the workflow's view of a callback and publish it as `callback:update`."""
        async with self.sessionmaker.begin() as session:
            row = await repo.apply_record(session, rec)
            event = callback_event(row, rec.event)
        if rec.attempt is not None:
            event["attempt"] = rec.attempt.model_dump(mode="json", by_alias=True)
        log.info("callback_recorded", callback_id=rec.callback_id, status=rec.status,
                 event_name=rec.event)
        await self.publish("callback:update", event)

    # --- the dial ----------------------------------------------------------------------------

    async def _numbers(self, req: DialRequest) -> tuple[str, str | None]:
        """(the number rung first, the number bridged to) for this request's mode."""
        if req.mode == CallbackMode.flow:
            return req.customer, None
        agent_number = req.agent_number
        if agent_number is None and req.agent_id is not None:
            async with self.sessionmaker() as session:
                agent_number = await repo.agent_phone(session, req.agent_id)
        if not agent_number:
            raise ApplicationError(
                f"agent {req.agent_id} is unknown, disabled or has no phone number",
                type="AgentUnavailable",
                non_retryable=True,
            )
        return agent_number, req.customer

    async def _mark(self, req: DialRequest, **fields: Any) -> dict[str, Any]:
        async with self.sessionmaker.begin() as session:
            return await repo.mark_attempt(session, req.callback_id, req.attempt, **fields)

    async def _find_placed(self, req: DialRequest, first: str, since: datetime) -> str | None:
        """The CallSid of this attempt's call if it exists: from a stored status callback for
        its CustomField, else from Exotel's call list (finished calls only)."""
        async with self.sessionmaker() as session:
            sid = await repo.sid_from_events(session, req.callback_id, req.custom_field)
        if sid:
            return sid
        assert self.exotel is not None
        calls = await self.exotel.find_calls(since=since - CLOCK_SKEW, from_number=first)
        found = _match(calls, req.custom_field, to_number=None, since=since - CLOCK_SKEW)
        return found.sid if found else None

    @activity.defn(name="callback_dial")
    async def callback_dial(self, req: DialRequest) -> DialResult:
        """Place the attempt's call through Exotel, at most once (see the module docstring)."""
        if self.exotel is None:
            return DialResult(
                outcome="refused", retry_sensible=False,
                error="Exotel is not configured (EXOTEL_SID, EXOTEL_API_KEY, EXOTEL_API_TOKEN)",
            )
        if not self.settings.exotel_caller_id:
            return DialResult(outcome="refused", retry_sensible=False,
                              error="EXOTEL_CALLER_ID (the ExoPhone to call from) is not set")
        if req.mode == CallbackMode.flow and not self.settings.exotel_app_id:
            return DialResult(outcome="refused", retry_sensible=False,
                              error="EXOTEL_APP_ID (the Exotel app callbacks run) is not set")
        try:
            first, bridged = await self._numbers(req)
        except ApplicationError as err:
            return DialResult(outcome="refused", retry_sensible=False, error=str(err))
        log_ctx = {"callback_id": req.callback_id, "attempt": req.attempt,
                   "first": mask(first), "customer": mask(req.customer)}
        async with _heartbeating():
            async with self.sessionmaker() as session:
                prior = await repo.attempt_of(session, req.callback_id, req.attempt)
            if prior.get("callSid"):
                return DialResult(outcome="placed", call_sid=prior["callSid"], first_number=first)
            if prior.get("dialRequestedAt"):
                # An earlier try sent the create and never learnt the answer: look, never resend.
                since = datetime.fromisoformat(prior["dialRequestedAt"])
                sid = await self._find_placed(req, first, since)
                if sid:
                    await self._mark(req, callSid=sid)
                    log.info("callback_dial_found_earlier_call", call_sid=sid, **log_ctx)
                    return DialResult(outcome="placed", call_sid=sid, first_number=first)
                log.warning("callback_dial_outcome_unknown", **log_ctx)
                return DialResult(
                    outcome="unknown", first_number=first,
                    error="an earlier dial try may have placed the call; waiting for its status",
                )
            await self._mark(req, dialRequestedAt=datetime.now(UTC).isoformat(),
                             customField=req.custom_field)
            try:
                placed = await self.exotel.connect_call(
                    from_number=first,
                    to_number=bridged,
                    app_id=self.settings.exotel_app_id if bridged is None else None,
                    caller_id=self.settings.exotel_caller_id,
                    custom_field=req.custom_field,
                    status_callback=callback_status_url(self.settings),
                    time_limit_s=self.settings.callback_time_limit_s,
                    timeout_s=self.settings.callback_ring_timeout_s,
                )
            except ExotelError as err:
                if not err.created_nothing:
                    log.warning("callback_dial_carrier_error", status=err.status, **log_ctx)
                    raise  # 5xx/garbage: maybe placed; the retry looks before it leaps
                await self._mark(req, dialRequestedAt=None)  # refused: nothing was placed
                if err.retryable:
                    log.info("callback_dial_throttled", status=err.status, **log_ctx)
                    raise  # 429: the retry policy backs off and sends again
                log.warning("callback_dial_refused", status=err.status, **log_ctx)
                return DialResult(
                    outcome="refused", error=str(err),
                    retry_sensible=not isinstance(err, ExotelBadRequest),
                )
            except (httpx.ConnectError, httpx.ConnectTimeout):
                await self._mark(req, dialRequestedAt=None)  # never reached Exotel
                raise
            await self._mark(req, callSid=placed.sid)
        log.info("callback_dialled", call_sid=placed.sid, **log_ctx)
        return DialResult(outcome="placed", call_sid=placed.sid, first_number=first)

    @activity.defn(name="callback_reconcile")
    async def callback_reconcile(self, req: ReconcileRequest) -> ReconcileResult:
        """What became of an attempt whose status callback never came (call details by sid,
        else Exotel's call list by number and CustomField)."""
        if self.exotel is None:
            return ReconcileResult(found=False, error="Exotel is not configured")
        async with self.sessionmaker() as session:
            sid = req.call_sid or await repo.sid_from_events(
                session, req.callback_id, req.custom_field
            )
        try:
            if sid:
                details = await self.exotel.call_details(sid)
            else:
                calls = await self.exotel.find_calls(
                    since=req.since - CLOCK_SKEW, from_number=req.first_number or req.customer
                )
                details = _match(calls, req.custom_field, to_number=None,
                                 since=req.since - CLOCK_SKEW)
        except ExotelError as err:
            if err.retryable:
                raise
            return ReconcileResult(found=False, call_sid=sid, error=str(err))
        if details is None:
            return ReconcileResult(found=False, call_sid=sid)
        return ReconcileResult(
            found=True, live=details.live, call_sid=details.sid, status=details.status,
            duration_s=details.conversation_duration_s or details.duration_s,
        )

    # --- business hours ----------------------------------------------------------------------

    @activity.defn(name="callback_business_hours")
    async def callback_business_hours(self, query: BusinessHoursQuery) -> BusinessHoursAnswer:
        """Is the schedule open at `at`, and if not, when does it open next (the business-hours
        engine, with the schedule's public holidays resolved here, outside the workflow)."""
        async with self.sessionmaker() as session:
            row = await session.get(BusinessHours, query.business_hours_id)
        if row is None:  # deleted since the callback was scheduled: dial as if open
            return BusinessHoursAnswer(open=True, checked=False,
                                       reason=f"business hours {query.business_hours_id} gone")
        schedule = business_hours.schedule_from_row(row)
        result = business_hours.snapshot(row.id, schedule, query.at).check(query.at)
        return BusinessHoursAnswer(
            open=result.open, next_open_at=result.next_open_at, reason=str(result.reason)
        )

    # --- SMS ---------------------------------------------------------------------------------

    def _sms_skip_reason(self, req: SmsRequest) -> str | None:
        """Why this SMS is not sent at all (a setting missing, no number to send to), if so."""
        if not self.settings.exotel_sms_sender:
            return "SMS is not configured (EXOTEL_SMS_SENDER)"
        if self.exotel is None:
            return "Exotel is not configured (EXOTEL_SID, EXOTEL_API_KEY, EXOTEL_API_TOKEN)"
        if sms.sms_number(req.to) is None:
            return "no phone number an SMS can go to"
        if req.kind not in sms.SMS_KINDS:
            return f"unknown SMS kind {req.kind!r}"
        return None

    def _sms_body(self, req: SmsRequest) -> str:
        """The text: the node's template if it gave one, else the kind's from settings."""
        template = req.template or self.settings.sms_template(req.kind) or ""
        variables = dict(req.variables)
        when = variables.get("at")
        if when and "time" not in variables:
            try:
                variables["time"] = format_local_time(
                    datetime.fromisoformat(when), self.settings.callback_sms_timezone
                )
            except ValueError:
                pass  # not a time: the template renders {{ time }} empty
        return sms.render(template, variables)

    def _sms_marker(self, req: SmsRequest) -> str | None:
        return req.custom_field or sms.marker(
            req.kind, callback_id=req.callback_id, call_sid=req.call_sid
        )

    @activity.defn(name="sms_send")
    async def sms_send(self, req: SmsRequest) -> SmsResult:
        """Send a templated SMS through Exotel (DLT ids from settings or the node); stored in
        sms_callbacks. Not configured, or nothing to send to: skipped with a log line."""
        skipped = self._sms_skip_reason(req)
        if skipped is not None:
            log.info("sms_skipped", kind=req.kind, to=mask(req.to), reason=skipped)
            return SmsResult(sent=False, error=skipped)
        assert self.exotel is not None
        body = self._sms_body(req)
        if not body:
            log.info("sms_skipped", kind=req.kind, to=mask(req.to), reason="empty text")
            return SmsResult(sent=False, error="the SMS text rendered empty")
        marker = self._sms_marker(req)
        async with self.sessionmaker() as session:
            if marker and (done := await repo.sms_sent_for(session, marker)) is not None:
                return SmsResult(sent=True, sid=done.sms_sid, status=done.status)
        dlt_template_id = self.settings.dlt_template_id(req.kind, req.dlt_template_id)
        try:
            sent = await self.exotel.send_sms(
                sender=self.settings.exotel_sms_sender,
                to_number=req.to,
                body=body,
                dlt_entity_id=self.settings.exotel_dlt_entity_id or None,
                dlt_template_id=dlt_template_id,
                status_callback=sms_status_url(self.settings),
                custom_field=marker,
            )
        except ExotelError as err:
            if err.retryable and err.created_nothing:
                raise  # 429: back off and send again
            log.warning("sms_not_sent", kind=req.kind, to=mask(req.to), status=err.status)
            return SmsResult(sent=False, error=str(err))
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise  # never reached Exotel: sending again is safe
        except httpx.HTTPError as err:
            # Sent, but no answer: Exotel may have the SMS, so it is never sent blindly again.
            log.warning("sms_outcome_unknown", kind=req.kind, to=mask(req.to),
                        error=type(err).__name__)
            return SmsResult(sent=False, error=f"no answer from Exotel ({type(err).__name__}); "
                                               "the SMS may have been sent")
        async with self.sessionmaker.begin() as session:
            await repo.record_sms(
                session, sms_sid=sent.sid, to_number=req.to,
                from_number=self.settings.exotel_sms_sender, status=sent.status,
                detailed_status=sent.detailed_status, callback_id=req.callback_id,
                payload={"direction": "outbound", "kind": req.kind, "body": body,
                         "customField": marker, "callSid": req.call_sid,
                         "dltTemplateId": dlt_template_id},
            )
        log.info("sms_sent", kind=req.kind, to=mask(req.to), sms_sid=sent.sid)
        return SmsResult(sent=True, sid=sent.sid, status=sent.status)

    @activity.defn(name="sms_dispatch")
    async def sms_dispatch(self, req: SmsRequest) -> SmsResult:
        """Hand one SMS to its own SmsWorkflow (`sms-{marker}`), which sends it with retries.

        For a call's end: its end actions are retried until they succeed and hold up the
        call's final record, so the SMS itself (Exotel slow, throttling, down) is sent outside
        them. Starting is idempotent (a retry finds the workflow started). Not configured, or
        nothing to send to: skipped with a log line (`status` "skipped"), never an error."""
        skipped = self._sms_skip_reason(req)
        marker = self._sms_marker(req)
        if skipped is None and marker is None:
            skipped = "the SMS follows no call or callback"
        if skipped is not None:
            log.info("sms_skipped", kind=req.kind, to=mask(req.to), reason=skipped,
                     call_sid=req.call_sid)
            return SmsResult(sent=False, status="skipped", error=skipped)
        assert marker is not None
        from temporalio.common import WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        workflow_id = sms.workflow_id(marker)
        try:
            await activity.client().start_workflow(
                sms.SMS_WORKFLOW,
                req.model_copy(update={"custom_field": marker}),
                id=workflow_id,
                task_queue=activity.info().task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            pass  # this activity's earlier try started it
        log.info("sms_dispatched", kind=req.kind, to=mask(req.to), workflow_id=workflow_id,
                 call_sid=req.call_sid)
        return SmsResult(sent=False, status="dispatched")

    # --- the queue's callback offer ----------------------------------------------------------

    async def _client(self) -> Any:
        if self._temporal is None:
            from core.temporal import connect

            self._temporal = await connect(self.settings)
        return self._temporal

    @activity.defn(name="callback_request_from_queue")
    async def callback_request_from_queue(self, req: QueueCallbackRequest) -> CallbackRef:
        """The queue's "call me back, keep my place": a voice_callbacks row (one per call) and
        its CallbackWorkflow, which waits for the routing engine's `agent_reserved` signal."""
        async with self.sessionmaker.begin() as session:
            row, created = await repo.create(
                session,
                repo.NewCallback(
                    phone_number=req.phone_number, scheduled_at=None, asap=True,
                    queue_id=req.queue_id, flow_id=None, agent_id=None, note=req.note,
                    max_attempts=req.max_attempts, retry_delay_s=req.retry_delay_s,
                    queue_position=req.queue_position, source_call_sid=req.call_sid,
                    idempotency_key=f"queue:{req.call_sid}",
                    request_hash=repo.request_hash(req.model_dump(mode="json")),
                ),
            )
            start = CallbackStart(
                callback_id=row.id, phone_number=row.phone_number, mode=CallbackMode.queue,
                queue_id=row.queue_id, queue_position=row.queue_position,
                max_attempts=row.max_attempts, retry_delay_s=row.retry_delay_s, note=row.note,
            )
            workflow_id = row.workflow_id or ""
        await start_callback_workflow(await self._client(), self.settings, start, workflow_id)
        return CallbackRef(callback_id=start.callback_id, workflow_id=workflow_id,
                           created=created)

    def all(self) -> list:
        return [
            self.callback_record,
            self.callback_dial,
            self.callback_reconcile,
            self.callback_business_hours,
            self.sms_send,
            self.sms_dispatch,
            self.callback_request_from_queue,
        ]


async def start_callback_workflow(
    client: Any, settings: Settings, start: CallbackStart, workflow_id: str
) -> bool:
    """Start the callback's workflow once: False if it already runs or ran (never twice)."""
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from core.callbacks import CALLBACK_WORKFLOW

    try:
        await client.start_workflow(
            CALLBACK_WORKFLOW,
            start,
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def format_local_time(at: datetime, tz: str) -> str:
    """`4:30 pm` (with the date if not today there), as an SMS reads best."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    text = local.strftime("%I:%M %p").lstrip("0").lower()
    if local.date() != datetime.now(zone).date():
        text += local.strftime(" on %d %b").replace(" 0", " ")
    return text


def _match(
    calls: list[CallDetails], custom_field: str, *, to_number: str | None, since: datetime
) -> CallDetails | None:
    """The call that is this attempt: same CustomField where Exotel lists it, else the newest
    call created since the intent (the list was already filtered by the number rung first)."""
    for call in calls:
        if call.custom_field == custom_field:
            return call
    for call in calls:
        if call.custom_field:
            continue  # another attempt's call
        created = parse_exotel_time(call.date_created)
        if created is not None and created < since:
            continue
        if to_number and call.to_number and call.to_number != to_number:
            continue
        return call
    return None
