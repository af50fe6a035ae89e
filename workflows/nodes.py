"""Node handlers: what each node type does when a call enters it and when the carrier answers.

Handlers are deterministic (they run inside the workflow). A handler never touches I/O; work
that needs it goes through `ctx` (activities started by the workflow). New node types plug in
by registering a handler here: the walker in `workflows/call.py` does not change.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.flows import templates
    from core.telephony import (
        CallEvent,
        EventKind,
        Gather,
        Hangup,
        Instruction,
        Play,
        Record,
        Say,
    )

from workflows import sms_steps

GOODBYE = "Thank you for calling. Goodbye."
NOT_AVAILABLE = "Sorry, this option is not available yet. Please call again later. Goodbye."


@dataclass
class Step:
    """What a handler decided: instructions to speak, then either a port to follow or a wait."""

    emit: list[Instruction] = field(default_factory=list)
    port: str | None = None  # unconnected ports fall back along the flow's port table
    wait: bool = False  # stay on this node until the carrier reports the last instruction's result
    hangup_reason: str | None = None  # the call ends after `emit`
    data: dict[str, Any] = field(default_factory=dict)  # recorded on the node visit


class Context(Protocol):
    """What handlers may use of the running call (implemented by workflows.call._Ctx)."""

    variables: dict[str, Any]
    node_state: dict[str, Any]  # per-node scratch (retry counters), reset when the node is entered
    inbox: dict[str, Any]  # messages from the rest of the system (the workflow's `notify` signal)

    def render(self, template: str | None) -> str: ...

    def now(self) -> datetime: ...

    async def activity(
        self,
        name: str,
        arg: Any,
        *,
        result_type: type | None = None,
        timeout_s: float = 10.0,
        local: bool = True,
        retry: RetryPolicy | None = None,
    ) -> Any: ...

    def on_end(self, key: str, activity: str, arg: Any) -> None: ...

    def cancel_on_end(self, key: str) -> None: ...


class NodeHandler(Protocol):
    """`enter` and `resume` return a Step, or an awaitable of one when they need activities
    (the walker awaits it; the carrier's turn waits, so keep such work short)."""

    def enter(self, ctx: Context, node: Any) -> Step | Awaitable[Step]: ...
    def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step | Awaitable[Step]: ...


def _cfg(node: Any, name: str, default: Any = None) -> Any:
    value = getattr(node.config, name, default)
    return default if value is None else value


def prompt(ctx: Context, node: Any, *, text_field: str = "message") -> list[Say | Play]:
    """The node's prompt: its audio URL if it has one, else its message rendered as speech."""
    audio = _cfg(node, "audio_url")
    loop = int(_cfg(node, "loop", 1) or 1)
    if audio:
        return [Play(url=str(audio), loop=loop)]
    text = ctx.render(_cfg(node, text_field))
    if not text:
        return []
    voice = _cfg(node, "voice")
    return [
        Say(
            text=text,
            voice=str(voice) if voice else None,
            language=str(_cfg(node, "language", "en-IN")),
            loop=loop,
        )
    ]


class WelcomeHandler:
    def enter(self, ctx: Context, node: Any) -> Step | Awaitable[Step]:
        port = "next"
        if _cfg(node, "check_business_hours", False):
            if _cfg(node, "business_hours_id") is not None:
                return welcome_with_schedule(ctx, node)
            # No schedule named: as before schedules existed, the line counts as open unless
            # a variable says otherwise (calls recorded then replay unchanged).
            is_open = ctx.variables.get("business_hours_open", True)
            port = "open" if is_open else "closed"
        return Step(emit=prompt(ctx, node), port=port)

    def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        return self.enter(ctx, node)


class PlayHandler:
    def enter(self, ctx: Context, node: Any) -> Step:
        return Step(emit=prompt(ctx, node), port="next")

    def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        return Step(port="next")


class MenuHandler:
    """DTMF menu: a valid key follows its port; a wrong key or silence retries, then gives up."""

    def _gather(self, ctx: Context, node: Any, lead: list[Say | Play]) -> Step:
        options = _cfg(node, "options", [])
        longest = max((len(o.digit) for o in options), default=1)
        gather = Gather(
            prompt=[*lead, *prompt(ctx, node)],
            max_digits=longest,
            min_digits=1,
            finish_on_key="#" if longest > 1 else "",
            timeout_s=float(_cfg(node, "timeout", 5)),
        )
        return Step(emit=[gather], wait=True)

    def enter(self, ctx: Context, node: Any) -> Step:
        ctx.node_state.update(invalid=0, timeout=0)
        return self._gather(ctx, node, [])

    def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        digits = (event.digits or "").strip() if event.kind == EventKind.digits else ""
        choices = {o.digit for o in _cfg(node, "options", [])}
        if digits in choices:
            ctx.variables["last_digits"] = digits
            ctx.variables[f"menu_{node.id}"] = digits
            return Step(port=digits, data={"digits": digits})
        failure = "invalid" if digits else "timeout"
        ctx.node_state[failure] = ctx.node_state.get(failure, 0) + 1
        attempts = ctx.node_state.get("invalid", 0) + ctx.node_state.get("timeout", 0)
        max_retries = int(_cfg(node, "max_retries", 3))
        data = {"digits": digits, "failure": failure, "attempt": attempts}
        if attempts >= max_retries:
            # `invalid` / `timeout` fall back to `maxRetries` when unconnected (core.flows.ports).
            return Step(port=failure, data=data)
        message = _cfg(node, f"{failure}_message")
        lead = [Say(text=ctx.render(message))] if message else []
        step = self._gather(ctx, node, lead)
        step.data = data
        return step


class RecordHandler:
    """Voicemail: prompt, beep, record; the recording URL is kept on the call."""

    def enter(self, ctx: Context, node: Any) -> Step:
        record = Record(
            prompt=prompt(ctx, node),
            max_length_s=int(_cfg(node, "max_length", 120)),
            finish_on_key=_cfg(node, "finish_on_key", "#"),
            play_beep=bool(_cfg(node, "play_beep", True)),
        )
        return Step(emit=[record], wait=True)

    def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        url = event.recording_url if event.kind == EventKind.recording else None
        if url:
            ctx.variables["recording_url"] = url
            target = _cfg(node, "save_to_variable")
            if target:
                ctx.variables[target] = url
            sms_steps.voicemail_left(ctx, node)
        return Step(port="next", data={"recordingUrl": url})


class HangupHandler:
    def enter(self, ctx: Context, node: Any) -> Step:
        reason = _cfg(node, "reason", "completed")
        return Step(emit=[*prompt(ctx, node), Hangup(reason=reason)], hangup_reason=reason)

    def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        return self.enter(ctx, node)


class NotYetAvailableHandler:
    """Node types whose engines land in later issues end the call politely, never silently."""

    def enter(self, ctx: Context, node: Any) -> Step:
        return Step(
            emit=[Say(text=NOT_AVAILABLE), Hangup(reason="not_available")],
            hangup_reason="not_available",
            data={"notAvailable": node.type},
        )

    def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        return self.enter(ctx, node)


# Below the names it uses (Context, Step, prompt): routing_nodes imports them from here.
from workflows.logic_nodes import (  # noqa: E402
    ApiHandler,
    DecisionHandler,
    GatherHandler,
    welcome_with_schedule,
)
from workflows.routing_nodes import QueueHandler, TransferHandler  # noqa: E402

_later = NotYetAvailableHandler()
HANDLERS: dict[str, NodeHandler] = {
    "welcome": WelcomeHandler(),
    "play": PlayHandler(),
    "menu": MenuHandler(),
    "record": RecordHandler(),
    "hangup": HangupHandler(),
    "queue": QueueHandler(),
    "transfer": TransferHandler(),
    "decision": DecisionHandler(),
    "gather": GatherHandler(),
    "api": ApiHandler(),
}


def render(template: str | None, variables: dict[str, Any]) -> str:
    return templates.render(template or "", variables) if template else ""
