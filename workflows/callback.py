"""CallbackWorkflow: one callback request, from waiting to its last dial (id `callback-{id}`).

It waits durably until the callback is due (or dials at once for ASAP), moves to the next
opening when its business hours say closed, and for queue callbacks waits until the routing
engine reserves an agent (`agent_reserved`). Each attempt is dialled once through an activity
that never places a second call for the same attempt, then waits for the carrier's status
callback (the `carrier_status` signal) or, if that never comes, asks Exotel. Failed attempts
are retried after `retry_delay_s`, growing by `backoff`, up to `max_attempts`. `reschedule`
(update) moves the next attempt, `cancel` (signal) stops it, `status` (query) shows it. Every
change is written to voice_callbacks and published by the `callback_record` activity.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.callbacks import (
        AGENT_RESERVED_SIGNAL,
        ANSWERED,
        CALLBACK_WORKFLOW,
        CANCEL_SIGNAL,
        CARRIER_STATUS_SIGNAL,
        RESCHEDULE_UPDATE,
        STATUS_QUERY,
        TERMINAL_STATUSES,
        AgentReserved,
        AttemptRecord,
        BusinessHoursAnswer,
        BusinessHoursQuery,
        CallbackMode,
        CallbackOutcome,
        CallbackRecord,
        CallbackStart,
        CallbackState,
        CarrierCallStatus,
        DialRequest,
        DialResult,
        QueueDialDone,
        QueueEnqueue,
        QueueHold,
        QueuePlace,
        ReconcileRequest,
        ReconcileResult,
        RescheduleRequest,
        SmsRequest,
        SmsResult,
        attempt_outcome,
        custom_field,
        retry_delay_s,
    )
    from core.sms import CALLBACK_QUEUED, CALLBACK_SCHEDULED

# Records must land: retry until the database is back.
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
# The dial: 429 and 5xx back off; the activity itself makes a retry safe (it looks first).
DIAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
    non_retryable_error_types=["AgentUnavailable"],
)
DIAL_TIMEOUT = timedelta(seconds=30)
DIAL_HEARTBEAT = timedelta(seconds=8)
# Past this the dial counts as "unknown" and the attempt is settled by reconciling.
DIAL_GIVE_UP = timedelta(minutes=10)
QUICK_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))
# How many times a call Exotel still shows as live is looked at again before giving up.
MAX_RECONCILES = 6
# Consecutive "closed" answers before a schedule that never opens fails the callback.
MAX_CLOSED_MOVES = 50
# Queue callbacks with sendSms get an SMS too (before this, only timed ones did).
QUEUE_SMS_PATCH = "sms-for-queue-callbacks"


@workflow.defn(name=CALLBACK_WORKFLOW)
class CallbackWorkflow:
    @workflow.init
    def __init__(self, start: CallbackStart) -> None:
        self._start = start
        self._status = "waiting_in_queue" if start.mode == CallbackMode.queue else "scheduled"
        self._due: datetime | None = start.scheduled_at
        self._max_attempts = start.max_attempts
        self._attempts: list[AttemptRecord] = []
        self._cancel = False
        self._wake = 0
        self._statuses: dict[str, CarrierCallStatus] = {}
        self._reservation: AgentReserved | None = None
        self._last_error: str | None = None
        self._agent_id: int | None = start.agent_id
        self._lock = asyncio.Lock()

    # --- handlers ----------------------------------------------------------------------------

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> CallbackState:
        return CallbackState(
            callback_id=self._start.callback_id,
            status=self._status,
            mode=self._start.mode,
            next_attempt_at=self._due if self._status not in TERMINAL_STATUSES else None,
            attempts=list(self._attempts),
            max_attempts=self._max_attempts,
            cancel_requested=self._cancel,
            last_error=self._last_error,
            agent_id=self._agent_id,
        )

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        self._cancel = True

    @workflow.signal(name=CARRIER_STATUS_SIGNAL)
    def carrier_status(self, status: CarrierCallStatus) -> None:
        # Only the terminal status counts, and only the first (Exotel retries callbacks).
        if attempt_outcome(status.status) is not None and status.custom_field not in self._statuses:
            self._statuses[status.custom_field] = status

    @workflow.signal(name=AGENT_RESERVED_SIGNAL)
    def agent_reserved(self, reservation: AgentReserved) -> None:
        if self._start.mode == CallbackMode.queue and self._reservation is None:
            self._reservation = reservation

    @workflow.update(name=RESCHEDULE_UPDATE)
    async def reschedule(self, req: RescheduleRequest) -> CallbackState:
        async with self._lock:
            self._due = None if req.asap else req.scheduled_at
            if req.max_attempts is not None:
                self._max_attempts = req.max_attempts
            self._wake += 1
            if self._status not in TERMINAL_STATUSES:
                self._status = "waiting_in_queue" if self._queue_waiting() else "scheduled"
            await self._write("rescheduled", max_attempts=req.max_attempts)
        return self.status()

    @reschedule.validator
    def _check_reschedule(self, req: RescheduleRequest) -> None:
        if self._status in TERMINAL_STATUSES or self._cancel:
            raise ValueError(f"the callback is {self._status}; it cannot be rescheduled")
        if self._status == "dialing":
            raise ValueError("a dial is in progress; reschedule after it ends")
        if req.max_attempts is not None and req.max_attempts <= len(self._attempts):
            raise ValueError(
                f"maxAttempts must be more than the {len(self._attempts)} attempts already made"
            )
        if not req.asap and req.scheduled_at is None:
            raise ValueError("give scheduledAt or asap")

    # --- the run -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: CallbackStart) -> CallbackOutcome:
        await self._write(self._status, next_attempt_at=self._due)
        if start.send_sms:
            if start.mode != CallbackMode.queue:
                await self._sms_scheduled(CALLBACK_SCHEDULED)
            elif workflow.patched(QUEUE_SMS_PATCH):
                # A queue callback has no time yet: "we will call you back when it is your turn".
                await self._sms_scheduled(CALLBACK_QUEUED)
        closed_moves = 0
        while True:
            if not await self._wait_until_due():
                return await self._finish("cancelled", "cancelled before it was dialled")
            if start.business_hours_id is not None:
                moved = await self._move_to_opening(start.business_hours_id)
                if moved:
                    closed_moves += 1
                    if closed_moves > MAX_CLOSED_MOVES:
                        return await self._finish("failed", "business hours never open")
                    continue
            closed_moves = 0
            if start.mode == CallbackMode.queue:
                waited = await self._wait_for_agent()
                if waited == "cancelled":
                    return await self._finish("cancelled", "cancelled while waiting in the queue")
                if waited == "no_queue":
                    return await self._finish("failed", f"queue {start.queue_id} is gone")
            number = len(self._attempts) + 1
            outcome, retry_sensible = await self._attempt(number)
            if start.mode == CallbackMode.queue:
                await self._release(number, outcome)
            if outcome == ANSWERED:
                return await self._finish("completed", f"answered on attempt {number}")
            if self._cancel:
                return await self._finish("cancelled", f"cancelled after attempt {number}")
            if not retry_sensible:
                return await self._finish("failed", self._last_error or outcome)
            if number >= self._max_attempts:
                return await self._finish(
                    "exhausted", f"no answer after {number} attempts (last: {outcome})"
                )
            delay_s = retry_delay_s(start.retry_delay_s, start.backoff, number)
            async with self._lock:
                self._due = workflow.now() + timedelta(seconds=delay_s)
                self._status = "waiting_in_queue" if start.mode == CallbackMode.queue else (
                    "scheduled"
                )
                await self._write("retry", next_attempt_at=self._due)

    def _queue_waiting(self) -> bool:
        return self._start.mode == CallbackMode.queue and self._reservation is None

    async def _wait_until_due(self) -> bool:
        """Sleep until the next attempt is due; a reschedule re-arms it. False on cancel."""
        while True:
            if self._cancel:
                return False
            if self._due is None:
                return True
            remaining_s = (self._due - workflow.now()).total_seconds()
            if remaining_s <= 0:
                return True
            wake = self._wake
            try:
                await workflow.wait_condition(
                    lambda wake=wake: self._cancel or self._wake != wake, timeout=remaining_s
                )
            except TimeoutError:
                pass

    async def _move_to_opening(self, business_hours_id: int) -> bool:
        """True if business hours are closed now and the next attempt moved to the opening."""
        answer: BusinessHoursAnswer = await workflow.execute_activity(
            "callback_business_hours",
            BusinessHoursQuery(business_hours_id=business_hours_id, at=workflow.now()),
            result_type=BusinessHoursAnswer,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=QUICK_RETRY,
        )
        if answer.open or answer.next_open_at is None:
            if not answer.open:
                workflow.logger.warning("business hours closed with no next opening; dialling")
            return False
        if answer.next_open_at <= workflow.now():
            return False
        async with self._lock:
            self._due = answer.next_open_at
            self._last_error = None
            await self._write("moved_to_opening", next_attempt_at=self._due,
                              last_error=f"closed ({answer.reason or 'business hours'})")
        return True

    async def _wait_for_agent(self) -> str:
        """Queue callbacks keep their place until the routing engine reserves an agent (and the
        agent is still held for this dial): "ready", "cancelled" or "no_queue"."""
        start = self._start
        while True:
            if self._reservation is None:
                async with self._lock:
                    if self._status != "waiting_in_queue":
                        self._status = "waiting_in_queue"
                        await self._write("waiting_in_queue")
                if start.queue_id is not None:
                    place: QueuePlace = await workflow.execute_activity(
                        "callback_queue_enqueue",
                        QueueEnqueue(
                            callback_id=start.callback_id, queue_id=start.queue_id,
                            entry_id=start.source_call_sid or f"callback-{start.callback_id}",
                            phone_number=start.phone_number,
                        ),
                        result_type=QueuePlace,
                        start_to_close_timeout=timedelta(seconds=15),
                        retry_policy=WRITE_RETRY,
                    )
                    if not place.known_queue:
                        return "no_queue"
                await workflow.wait_condition(
                    lambda: self._cancel or self._reservation is not None
                )
            if self._cancel:
                return "cancelled"
            reservation = self._reservation
            assert reservation is not None
            if not reservation.hold_activity:
                return "ready"
            held: bool = await workflow.execute_activity(
                reservation.hold_activity,
                QueueHold(reservation_id=reservation.reservation_id,
                          agent_id=reservation.agent_id, seconds=float(self._dial_window_s())),
                result_type=bool,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=QUICK_RETRY,
            )
            if held:
                return "ready"
            workflow.logger.info("agent reservation lapsed before the dial; back to the queue")
            self._reservation = None

    def _dial_window_s(self) -> int:
        start = self._start
        legs = 1 if start.mode == CallbackMode.flow else 2
        return start.ring_timeout_s * legs + start.time_limit_s + start.status_grace_s

    async def _attempt(self, number: int) -> tuple[str, bool]:
        """Dial once and settle the outcome: (attempt outcome, whether retrying makes sense)."""
        start = self._start
        field = custom_field(start.callback_id, number)
        agent_id, agent_number = start.agent_id, None
        if self._reservation is not None:
            agent_id, agent_number = self._reservation.agent_id, self._reservation.agent_number
        self._agent_id = agent_id
        attempt = AttemptRecord(
            number=number, custom_field=field, status="dialing", started_at=workflow.now(),
            agent_id=agent_id,
        )
        async with self._lock:
            self._attempts.append(attempt)
            self._status = "dialing"
            await self._write("dialing", attempt=attempt, agent_id=agent_id)
        try:
            result: DialResult = await workflow.execute_activity(
                "callback_dial",
                DialRequest(
                    callback_id=start.callback_id, attempt=number, custom_field=field,
                    mode=start.mode, customer=start.phone_number, agent_id=agent_id,
                    agent_number=agent_number,
                ),
                result_type=DialResult,
                start_to_close_timeout=DIAL_TIMEOUT,
                heartbeat_timeout=DIAL_HEARTBEAT,
                schedule_to_close_timeout=DIAL_GIVE_UP,
                retry_policy=DIAL_RETRY,
            )
        except ActivityError as err:
            # Out of retries: a try may still have placed the call, so settle it by looking.
            cause = err.cause.message if err.cause is not None else str(err)  # type: ignore[attr-defined]
            result = DialResult(outcome="unknown", error=f"dial failed: {cause}")
        if result.outcome == "refused":
            self._last_error = result.error
            await self._close(attempt, "failed", reason=result.error)
            return "failed", result.retry_sensible
        outcome, sid, duration_s, reason = await self._settle(field, result, agent_number)
        self._last_error = None if outcome == ANSWERED else reason or outcome
        await self._close(attempt, outcome, sid=sid, duration_s=duration_s, reason=reason)
        return outcome, True

    async def _settle(
        self, field: str, dialled: DialResult, agent_number: str | None
    ) -> tuple[str, str | None, float | None, str | None]:
        """Wait for the attempt's status callback; without one, ask Exotel what happened."""
        start = self._start
        two_legs = start.mode != CallbackMode.flow
        wait_s = self._dial_window_s()
        sid = dialled.call_sid
        for _ in range(MAX_RECONCILES):
            try:
                await workflow.wait_condition(lambda: field in self._statuses, timeout=wait_s)
            except TimeoutError:
                pass
            if field in self._statuses:
                return self._from_status(self._statuses[field], sid, two_legs)
            found: ReconcileResult = await workflow.execute_activity(
                "callback_reconcile",
                ReconcileRequest(
                    callback_id=start.callback_id, custom_field=field, call_sid=sid,
                    mode=start.mode, customer=start.phone_number,
                    first_number=dialled.first_number or (
                        agent_number if two_legs else start.phone_number
                    ),
                    since=self._attempts[-1].started_at,
                ),
                result_type=ReconcileResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK_RETRY,
            )
            sid = found.call_sid or sid
            if found.found and not found.live:
                outcome = attempt_outcome(found.status) or "failed"
                return outcome, sid, found.duration_s, f"from call details: {found.status}"
            if not found.found:
                # Past ring time and time limit no live call can hide from the call list.
                why = found.error or "no call found at the carrier"
                if dialled.error:
                    why = f"{why} ({dialled.error})"
                return "no-call", sid, None, why
            wait_s = start.ring_timeout_s + start.status_grace_s  # still live: look again soon
        return "failed", sid, None, "the call's outcome could not be confirmed"

    @staticmethod
    def _from_status(
        status: CarrierCallStatus, sid: str | None, two_legs: bool
    ) -> tuple[str, str | None, float | None, str | None]:
        outcome = attempt_outcome(status.status) or "failed"
        # Agent-first: "completed" with no conversation means the customer never picked up.
        if two_legs and outcome == ANSWERED and status.conversation_duration_s == 0:
            return "no-answer", status.call_sid or sid, 0.0, "the customer did not answer"
        duration = status.conversation_duration_s
        if duration is None:
            duration = status.duration_s
        reason = None if outcome == ANSWERED else f"carrier status {status.status}"
        return outcome, status.call_sid or sid, duration, reason

    async def _close(
        self,
        attempt: AttemptRecord,
        outcome: str,
        *,
        sid: str | None = None,
        duration_s: float | None = None,
        reason: str | None = None,
    ) -> None:
        done = attempt.model_copy(
            update={"status": outcome, "ended_at": workflow.now(),
                    "call_sid": sid or attempt.call_sid, "duration_s": duration_s,
                    "reason": reason}
        )
        self._attempts[done.number - 1] = done
        async with self._lock:
            await self._write("attempt", attempt=done, last_error=self._last_error)

    async def _release(self, number: int, outcome: str) -> None:
        """Tell the routing engine the reserved agent's dial is over (if it asked to be told)."""
        reservation = self._reservation
        self._reservation = None  # a retry waits for a new reservation
        if reservation is None or not reservation.release_activity:
            return
        await workflow.execute_activity(
            reservation.release_activity,
            QueueDialDone(
                callback_id=self._start.callback_id, queue_id=self._start.queue_id,
                agent_id=reservation.agent_id, reservation_id=reservation.reservation_id,
                attempt=number, outcome=outcome,
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=WRITE_RETRY,
        )

    async def _sms_scheduled(self, kind: str) -> None:
        at = self._due or workflow.now()
        variables = {"at": at.isoformat()}
        if kind == CALLBACK_QUEUED and self._start.queue_position is not None:
            variables = {"position": str(self._start.queue_position)}
        try:
            result: SmsResult = await workflow.execute_activity(
                "sms_send",
                SmsRequest(to=self._start.phone_number, kind=kind,
                           variables=variables, callback_id=self._start.callback_id),
                result_type=SmsResult,
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=QUICK_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("%s SMS not sent", kind)
            return
        if not result.sent:
            workflow.logger.info("%s SMS skipped: %s", kind, result.error)

    async def _finish(self, status: str, reason: str) -> CallbackOutcome:
        async with self._lock:
            self._status = status
            await self._write(status, finished=True,
                              last_error=None if status == "completed" else reason)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return CallbackOutcome(
            callback_id=self._start.callback_id, status=status,
            attempts=len(self._attempts), reason=reason,
        )

    async def _write(
        self,
        event: str,
        *,
        attempt: AttemptRecord | None = None,
        next_attempt_at: datetime | None = None,
        last_error: str | None = None,
        finished: bool = False,
        agent_id: int | None = None,
        max_attempts: int | None = None,
    ) -> None:
        await workflow.execute_activity(
            "callback_record",
            CallbackRecord(
                callback_id=self._start.callback_id, status=self._status, event=event,
                attempt=attempt, next_attempt_at=next_attempt_at or (
                    self._due if event == "rescheduled" else None
                ),
                last_error=last_error, finished=finished, agent_id=agent_id,
                max_attempts=max_attempts,
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=WRITE_RETRY,
        )
