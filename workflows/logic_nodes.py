"""Handlers of the logic nodes: decision, gather input, API, and the welcome node's
business-hours check.

Deterministic like every handler: schedules and HTTP go through activities (`ctx.activity`,
local, so the caller's turn waits only milliseconds for a schedule), the clock is `ctx.now()`
(or the configured test clock the schedule activity hands back). The handlers never let the
far end crash a call: an activity that fails is an `error` port (API) or an open line
(business hours, so callers are served rather than sent to voicemail by an outage).

`workflows.nodes` imports this module for its handler table, so the names it needs from there
are looked up when a handler runs, not at import.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.business_hours import CheckResult, ScheduleBundle, ScheduleRequest
    from core.flows.api_call import ApiCallResult, build_request
    from core.flows.conditions import Facts, evaluate, schedule_ids
    from core.flows.inputs import (
        InputResult,
        SealedInputCheck,
        SealedInputResult,
        Sensitive,
        mask_value,
        reveal,
        spoken_for_confirm,
        validate_input,
    )
    from core.flows.templates import render as render_template
    from core.telephony import CallEvent, EventKind, Gather, Say, SealedDigits

SCHEDULE_TIMEOUT_S = 3.0
SCHEDULE_RETRY = RetryPolicy(
    maximum_attempts=2,
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(milliseconds=500),
)
# An API node's own attempts happen inside the activity, within the node's timeout.
API_RETRY = RetryPolicy(maximum_attempts=1)
INVALID_DEFAULT = "Sorry, that entry is not valid."
TIMEOUT_DEFAULT = "Sorry, we did not receive any input."
CONFIRM_DEFAULT = "You entered {{ entered }}. Press 1 to confirm, or 2 to enter it again."


def _base() -> Any:
    from workflows import nodes

    return nodes


def _say(node: Any, text: str) -> Say:
    cfg = node.config
    voice = getattr(cfg, "voice", None)
    return Say(text=text, voice=str(voice) if voice else None,
               language=str(getattr(cfg, "language", None) or "en-IN"))


async def load_schedules(ctx: Any, ids: list[int]) -> tuple[ScheduleBundle | None, str | None]:
    """The schedules `ids` (with holidays), or None and why when they cannot be loaded."""
    try:
        bundle = await ctx.activity(
            "load_business_hours",
            ScheduleRequest(ids=ids, at=ctx.now()),
            result_type=ScheduleBundle,
            timeout_s=SCHEDULE_TIMEOUT_S,
            retry=SCHEDULE_RETRY,
        )
    except ActivityError as err:
        workflow.logger.warning("business hours unavailable: %s", err.cause or err)
        return None, "unavailable"
    return bundle, None


# --- welcome: the business-hours check ------------------------------------------------------


async def welcome_with_schedule(ctx: Any, node: Any) -> Any:
    """The welcome node of a flow that names its schedule: greet, check, say why closed."""
    nodes = _base()
    emit = nodes.prompt(ctx, node)
    schedule_id = node.config.business_hours_id
    bundle, error = await load_schedules(ctx, [schedule_id])
    snap = bundle.get(schedule_id) if bundle is not None else None
    if snap is None:
        # No schedule to check (deleted, or the database is down): serve the caller.
        ctx.variables["business_hours_open"] = True
        return nodes.Step(emit=emit, port="open",
                          data={"businessHours": {"open": True, "error": error or "missing"}})
    result = snap.check(bundle.clock or ctx.now())
    _remember(ctx, result)
    if not result.open and result.message:
        emit.append(_say(node, result.message))
    return nodes.Step(
        emit=emit,
        port="open" if result.open else "closed",
        data={"businessHours": {"open": result.open, "reason": result.reason,
                                "holiday": result.holiday}},
    )


def _remember(ctx: Any, result: CheckResult) -> None:
    ctx.variables.update(
        business_hours_open=result.open,
        business_hours_reason=result.reason,
        business_hours_message=result.message or "",
        business_hours_next_open=result.next_open_at.isoformat() if result.next_open_at else "",
        holiday_name=result.holiday or "",
    )


# --- decision --------------------------------------------------------------------------------


class DecisionHandler:
    """Ordered conditions, first match wins; `default` when none does. Never waits."""

    def enter(self, ctx: Any, node: Any) -> Any:
        # Only schedules need an activity; weekday/between read the workflow clock (or the
        # test clock, when the same node also checks a schedule).
        if any(True for c in node.config.conditions for _ in schedule_ids(c)):
            return self._with_schedules(ctx, node)
        return self._decide(ctx, node, ctx.now(), {}, None)

    async def _with_schedules(self, ctx: Any, node: Any) -> Any:
        ids = sorted({i for c in node.config.conditions for i in schedule_ids(c)})
        bundle, error = await load_schedules(ctx, ids)
        at = (bundle.clock if bundle is not None else None) or ctx.now()
        schedules = {s.id: s.check(at).open for s in bundle.snapshots} if bundle else {}
        if bundle is not None and bundle.missing:
            error = "missing schedules: " + ", ".join(str(i) for i in bundle.missing)
        return self._decide(ctx, node, at, schedules, error)

    def _decide(
        self, ctx: Any, node: Any, at: Any, schedules: dict[int, bool], error: str | None
    ) -> Any:
        facts = Facts(
            variables=ctx.variables,
            caller=ctx.variables.get("caller") or None,
            now=at,
            schedules=schedules,
        )
        data: dict[str, Any] = {}
        if error:
            data["error"] = error
        for i, cond in enumerate(node.config.conditions):
            if evaluate(cond, facts):
                return _base().Step(port=cond.port, data={**data, "matched": i,
                                                          "label": cond.label})
        return _base().Step(port="default", data={**data, "matched": None})

    def resume(self, ctx: Any, node: Any, event: CallEvent) -> Any:
        return self.enter(ctx, node)


# --- gather input ----------------------------------------------------------------------------


class GatherHandler:
    """Digits validated by type; retries with the invalid prompt; optional confirm-back.

    Ports: `valid`; `invalid` when retries are used up by wrong input, `timeout` when by
    silence (it falls back to `invalid`). `maxRetries` is how many times the caller is asked
    again after the first try. A sensitive input is stored as a `Sensitive` (masked
    everywhere it is recorded) and read back by its last digits only. Through the API the
    workflow never sees it at all: the gateway seals the keys in the call vault and the
    `check_sealed_input` activity validates them (core.flows.vault).
    """

    def enter(self, ctx: Any, node: Any) -> Any:
        ctx.node_state.update(phase="input", invalid=0, timeout=0, redo=0)
        return self._ask(ctx, node, [])

    def _ask(self, ctx: Any, node: Any, lead: list[Any]) -> Any:
        cfg = node.config
        ctx.node_state["phase"] = "input"
        gather = Gather(
            prompt=[*lead, *_base().prompt(ctx, node)],
            max_digits=cfg.max_length,
            min_digits=1,
            finish_on_key=cfg.finish_on_key,
            timeout_s=float(cfg.timeout),
            sensitive=cfg.sensitive,
        )
        return _base().Step(emit=[gather], wait=True)

    def _confirm(self, ctx: Any, node: Any, result: InputResult, lead: list[Any]) -> Any:
        cfg = node.config
        ctx.node_state.update(phase="confirm", pending=result)
        entered = (result.spoken if isinstance(result.value, Sensitive)
                   else spoken_for_confirm(result, cfg.sensitive))
        text = render_template(
            cfg.confirm_message or CONFIRM_DEFAULT, {**ctx.variables, "entered": entered}
        )
        gather = Gather(prompt=[*lead, _say(node, text)], max_digits=1, min_digits=1,
                        finish_on_key="", timeout_s=float(cfg.timeout))
        return _base().Step(emit=[gather], wait=True)

    async def resume(self, ctx: Any, node: Any, event: CallEvent) -> Any:
        cfg = node.config
        typed = (event.digits or "").strip() if event.kind == EventKind.digits else ""
        state = ctx.node_state
        if event.sealed is not None and state.get("phase") == "input":
            return await self._sealed(ctx, node, event.sealed)
        if state.get("phase") == "confirm":
            pending: InputResult = state["pending"]
            if typed == "1":
                return self._accept(ctx, node, pending)
            if typed == "2":
                state["redo"] = state.get("redo", 0) + 1
                if state["redo"] > cfg.max_retries:
                    return _base().Step(port="invalid", data={"confirmed": False})
                return self._ask(ctx, node, [])
            failure = "invalid" if typed else "timeout"
            step = self._failed(ctx, node, failure, {"confirmKey": typed or None})
            if step.port is None:  # ask for the confirmation again, not the whole input
                again = self._confirm(ctx, node, pending, self._lead(ctx, node, failure))
                again.data = step.data
                return again
            return step
        if not typed:
            return self._failed(ctx, node, "timeout", {"input": None})
        result = validate_input(cfg, typed)
        shown = mask_value(typed) if cfg.sensitive else typed
        if not result.ok:
            return self._failed(ctx, node, "invalid", {"input": shown, "reason": result.reason})
        if cfg.confirm:
            step = self._confirm(ctx, node, result, [])
            step.data = {"input": shown, "valid": True}
            return step
        return self._accept(ctx, node, result)

    async def _sealed(self, ctx: Any, node: Any, sealed: SealedDigits) -> Any:
        """Keys the API kept in the call vault: validated by an activity, which hands back
        only valid or why not, the mask and the read-back; the value stays in the vault."""
        cfg = node.config
        call_sid = str(ctx.variables.get("call_sid", ""))
        # However the call ends, the vault goes with it (the API also drops it on the
        # carrier's final status; this covers a caller who is never heard from again).
        ctx.on_end("call-vault", "drop_call_vault", call_sid)
        try:
            checked = await ctx.activity(
                "check_sealed_input",
                SealedInputCheck(call_sid=call_sid, ref=sealed.ref, config=cfg),
                result_type=SealedInputResult,
                timeout_s=SCHEDULE_TIMEOUT_S,
                retry=SCHEDULE_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("sealed input of %s unreadable: %s", node.id, err.cause or err)
            checked = SealedInputResult(found=False)
        if not checked.found:  # the vault lost it: the caller is asked again
            return self._failed(ctx, node, "invalid",
                                {"input": sealed.masked, "reason": "input_unavailable"})
        if not checked.ok:
            return self._failed(ctx, node, "invalid",
                                {"input": checked.masked, "reason": checked.reason})
        result = InputResult(True, Sensitive.sealed(sealed.ref, checked.masked), checked.spoken)
        if cfg.confirm:
            step = self._confirm(ctx, node, result, [])
            step.data = {"input": checked.masked, "valid": True}
            return step
        return self._accept(ctx, node, result)

    def _accept(self, ctx: Any, node: Any, result: InputResult) -> Any:
        cfg = node.config
        if isinstance(result.value, Sensitive):
            value = result.value
        else:
            value = Sensitive.of(result.value) if cfg.sensitive else result.value
        ctx.variables[cfg.save_to_variable] = value
        shown = value.masked if isinstance(value, Sensitive) else value
        return _base().Step(port="valid", data={"valid": True, "value": shown})

    def _lead(self, ctx: Any, node: Any, failure: str) -> list[Any]:
        cfg = node.config
        message = getattr(cfg, f"{failure}_message") or (
            INVALID_DEFAULT if failure == "invalid" else TIMEOUT_DEFAULT
        )
        text = ctx.render(message)
        return [_say(node, text)] if text else []

    def _failed(self, ctx: Any, node: Any, failure: str, data: dict[str, Any]) -> Any:
        state = ctx.node_state
        state[failure] = state.get(failure, 0) + 1
        attempts = state.get("invalid", 0) + state.get("timeout", 0)
        data = {**data, "valid": False, "failure": failure, "attempt": attempts}
        if attempts > node.config.max_retries:
            return _base().Step(port=failure, data=data)
        if state.get("phase") == "confirm":
            return _base().Step(data=data)  # the caller re-asks the confirmation
        step = self._ask(ctx, node, self._lead(ctx, node, failure))
        step.data = data
        return step


# --- API -------------------------------------------------------------------------------------


class ApiHandler:
    """One HTTP request through the `call_api` activity; success, error or timeout port."""

    async def enter(self, ctx: Any, node: Any) -> Any:
        cfg = node.config
        request = build_request(
            cfg,
            reveal(ctx.variables),  # sensitive input goes to the API, never to a record
            call_sid=str(ctx.variables.get("call_sid", "")),
            node_id=node.id,
            timeout_s=float(cfg.timeout),
        )
        try:
            result = await ctx.activity(
                "call_api", request, result_type=ApiCallResult,
                timeout_s=float(cfg.timeout) + 1.0, retry=API_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("API node %s failed: %s", node.id, err.cause or err)
            result = ApiCallResult(outcome="error", error="the request could not be made")
        ctx.variables.update(result.variables)
        if cfg.save_to_variable and result.outcome == "success":
            ctx.variables[cfg.save_to_variable] = result.body
        ctx.variables["api_status"] = result.status
        if cfg.status_variable:
            ctx.variables[cfg.status_variable] = result.status
        ctx.variables["api_outcome"] = result.outcome
        ctx.variables["api_error"] = result.error or ""
        port = result.outcome if result.outcome in ("success", "timeout") else "error"
        return _base().Step(
            port=port,
            data={"status": result.status, "outcome": result.outcome, "error": result.error,
                  "elapsedMs": result.elapsed_ms, "attempts": result.attempts,
                  "mapped": sorted(result.variables)},
        )

    def resume(self, ctx: Any, node: Any, event: CallEvent) -> Any:
        return self.enter(ctx, node)
