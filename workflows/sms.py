"""SmsWorkflow: one SMS to a caller after an outcome, sent with retries (id `sms-{marker}`).

Started by the `sms_dispatch` activity from a call's end (voicemail left, call missed, queue
callback requested), so that a slow or throttling Exotel never holds up the call's final
record. `sms_send` is retried on 429s and connection failures with backoff, and never sends
twice for one marker (it finds the first send first); it gives up after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.callbacks import SmsRequest, SmsResult
    from core.sms import SEND_ACTIVITY, SMS_WORKFLOW

MAX_ATTEMPTS = 8
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=MAX_ATTEMPTS,
)


@workflow.defn(name=SMS_WORKFLOW)
class SmsWorkflow:
    @workflow.run
    async def run(self, req: SmsRequest) -> SmsResult:
        try:
            result: SmsResult = await workflow.execute_activity(
                SEND_ACTIVITY,
                req,
                result_type=SmsResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SEND_RETRY,
            )
        except ActivityError as err:
            cause = err.cause.message if err.cause is not None else str(err)  # type: ignore[attr-defined]
            workflow.logger.warning("SMS %s not sent: %s", req.kind, cause)
            return SmsResult(sent=False, error=f"gave up after {MAX_ATTEMPTS} tries: {cause}")
        if not result.sent:
            workflow.logger.info("SMS %s not sent: %s", req.kind, result.error)
        return result
