"""The optional SMS step of flow nodes: what a handler registers to run when the call ends.

A node's `sms` block (core.flows.schema.SmsStep) asks for an SMS to the caller after the call,
on that node's outcome. Handlers register it through the call's one end path (`ctx.on_end`),
so it goes out however the call ends, once, and never on the caller's turn; the end action
(`sms_dispatch`) hands it to an SmsWorkflow, so that the SMS never holds up the call's final
record either. Deterministic (runs inside the call workflow).

- `missed_call` (queue and transfer nodes): armed when the caller starts waiting for an
  agent; disarmed when an agent answers or the caller takes a callback.
- `voicemail` (record node): the caller left a recording; replaces a missed-call SMS.
- `callback_queued` (queue node's `callbackSms`): the caller took the callback offer.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.callbacks import SmsRequest
    from core.sms import (
        CALLBACK_QUEUED,
        DISPATCH_ACTIVITY,
        MISSED_CALL,
        VOICEMAIL,
        sms_number,
        sms_variables,
    )

# ctx.on_end keys: one registration per kind, replaced when registered again.
MISSED_CALL_KEY = "sms:missed_call"
VOICEMAIL_KEY = "sms:voicemail"
CALLBACK_KEY = "sms:callback"


def _step(node: Any, field: str = "sms") -> Any:
    step = getattr(node.config, field, None)
    return step if step is not None and step.enabled else None


def _request(ctx: Any, kind: str, step: Any, **fields: Any) -> SmsRequest | None:
    to = sms_number(str(ctx.variables.get("caller") or ""))
    if to is None:
        return None  # withheld or not a phone number: nothing to send to
    variables = sms_variables(ctx.variables)
    variables.update(fields.pop("variables", {}))
    return SmsRequest(
        to=to,
        kind=kind,
        variables=variables,
        template=step.template,
        dlt_template_id=step.dlt_template_id,
        call_sid=str(ctx.variables.get("call_sid") or "") or None,
        **fields,
    )


def arm_missed_call(ctx: Any, node: Any) -> None:
    """The caller starts waiting for an agent at `node`: SMS after the call unless one answers."""
    step = _step(node)
    if step is None:
        return
    request = _request(ctx, MISSED_CALL, step)
    if request is not None:
        ctx.on_end(MISSED_CALL_KEY, DISPATCH_ACTIVITY, request)


def agent_answered(ctx: Any) -> None:
    """The call reached someone: it was not missed."""
    ctx.cancel_on_end(MISSED_CALL_KEY)


def voicemail_left(ctx: Any, node: Any) -> None:
    """A recording was left at `node`: its SMS replaces a missed-call one."""
    step = _step(node)
    if step is None:
        return
    request = _request(ctx, VOICEMAIL, step)
    if request is not None:
        ctx.cancel_on_end(MISSED_CALL_KEY)
        ctx.on_end(VOICEMAIL_KEY, DISPATCH_ACTIVITY, request)


def callback_requested(ctx: Any, node: Any, callback_id: int, position: int | None) -> None:
    """The caller took the queue's callback offer: not missed; the offer's SMS if asked for."""
    ctx.cancel_on_end(MISSED_CALL_KEY)
    step = _step(node, "callback_sms")
    if step is None:
        return
    extra = {"position": str(position)} if position is not None else {}
    request = _request(ctx, CALLBACK_QUEUED, step, callback_id=callback_id, variables=extra)
    if request is not None:
        ctx.on_end(CALLBACK_KEY, DISPATCH_ACTIVITY, request)
