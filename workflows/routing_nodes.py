"""The queue and transfer nodes (deterministic: every side effect is an activity via `ctx`).

Queue: the caller joins the queue's Redis sorted set and holds in short segments (music, or
silence, with position and estimated-wait announcements every `announceInterval`); each return
from a segment asks Redis where the call stands. An agent reserved for the call sends it on
through `next` (the transfer node dials that agent); the max wait sends it through `timeout`
(or into the queue's overflow queue), a full queue through `full`. With callbacks offered,
announcement segments are a one-key gather: 1 records a callback request that keeps the place
and ends the call politely. However the call ends while queued, the end path takes it out of
the queue as abandoned and frees any agent reserved for it.

Transfer: dials a fixed number, a specific agent, or the best free agent by the node's
strategy (over its agent list, team and skills), reserving the agent atomically with a lease
that covers ring and talk time. No answer, busy or failure frees the agent and tries the next
one, up to `maxAttempts`; then `noAnswer` / `failed`. An answered call puts the agent in
wrap-up for their wrap-up time, records them on the execution, and leaves by `completed`.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.routing.announce import CALLBACK_OFFER, announcement
    from core.routing.calls import (
        AgentPick,
        DialLease,
        HoldSpec,
        QueueCallback,
        QueueCallbackResult,
        QueueEnter,
        QueueLeave,
        QueuePoll,
        QueueStatus,
        ReleaseRequest,
        ReserveRequest,
    )
    from core.telephony import (
        DEFAULT_GRACE_S,
        CallEvent,
        Dial,
        DialStatus,
        EventKind,
        Gather,
        Hangup,
        Hold,
        Instruction,
        Say,
    )

from workflows import sms_steps
from workflows.nodes import Context, Step, _cfg, prompt

HOLD_SEGMENT_S = 15.0  # short, so a caller who hangs up on hold is noticed within ~35 s
CALLBACK_KEY = "1"
CALLBACK_GATHER_S = 4.0
DIAL_TIME_LIMIT_S = 3600
QUEUE_KEY = "queue"  # on_end keys
AGENT_KEY = "agent"
ROUTING_VAR = "routing"  # a reservation handed from the queue node to the transfer node
CALLBACK_THANKS = (
    "Thank you. We will call you back when it is your turn, and you keep your place in the "
    "queue. Goodbye."
)


def _sid(ctx: Context) -> str:
    return str(ctx.variables.get("call_sid", ""))


def _now_s(ctx: Context) -> float:
    return ctx.now().timestamp()


# --- queue ---------------------------------------------------------------------------------


class QueueHandler:
    async def enter(self, ctx: Context, node: Any) -> Step:
        queue_id = _cfg(node, "queue_id")
        if queue_id is None:
            # A flow published before queues existed: no queue to wait in, try agents directly.
            return Step(port="next", data={"queue": None})
        return await self._join(ctx, node, int(queue_id), lead=prompt(ctx, node))

    async def _join(
        self, ctx: Context, node: Any, queue_id: int, *, lead: list[Any], overflowed: bool = False
    ) -> Step:
        # The node's priority, else one a decision set in `queue_priority`, else the queue's.
        priority = _cfg(node, "priority")
        if priority is None and ctx.variables.get("queue_priority") is not None:
            priority = max(0, min(100, _int(ctx.variables.get("queue_priority"), 0)))
        status: QueueStatus = await ctx.activity(
            "queue_enter",
            QueueEnter(
                queue_id=queue_id,
                call_sid=_sid(ctx),
                caller=str(ctx.variables.get("caller") or "") or None,
                priority=priority,
            ),
            result_type=QueueStatus,
        )
        st = ctx.node_state
        if status.outcome == "unknown_queue":
            return Step(emit=lead, port="timeout", data={"queueId": queue_id, "unknown": True})
        settings = status.settings
        assert settings is not None
        max_wait = _cfg(node, "max_wait_time") or settings.max_wait_s
        deadline = _now_s(ctx) + float(max_wait)
        if st.get("queue_id") == queue_id and "deadline_s" in st:
            deadline = float(st["deadline_s"])  # joining again after a lost entry: same limit
        st.update(
            queue_id=queue_id,
            entered_s=_now_s(ctx),
            deadline_s=deadline,
            last_announce_s=None,
            overflowed=overflowed or st.get("overflowed", False),
            music=_cfg(node, "hold_music_url") or settings.hold_music_url,
            hold_message=_cfg(node, "hold_message") or settings.hold_message,
            interval_s=float(_cfg(node, "announce_interval") or settings.announce_interval_s),
            announce_position=_pick(_cfg(node, "announce_position"), settings.announce_position),
            announce_wait=_pick(_cfg(node, "announce_wait_time"), settings.announce_wait_time),
            offer_callback=_pick(_cfg(node, "offer_callback"), settings.callback_enabled)
            and bool(ctx.variables.get("caller")),
            overflow_queue_id=settings.overflow_queue_id,
        )
        ctx.variables["queue_id"] = queue_id
        sms_steps.arm_missed_call(ctx, node)
        if status.outcome == "full":
            return await self._overflow(ctx, node, lead, "full", status)
        ctx.on_end(
            QUEUE_KEY,
            "queue_leave",
            QueueLeave(queue_id=queue_id, call_sid=_sid(ctx), status="abandoned", release=True),
        )
        if status.outcome == "assigned":
            return self._assigned(ctx, status, lead)
        return self._hold(ctx, status, lead)

    async def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        st = ctx.node_state
        queue_id = int(st["queue_id"])
        digits = (event.digits or "").strip() if event.kind == EventKind.digits else ""
        if digits == CALLBACK_KEY and st.get("offer_callback"):
            return await self._callback(ctx, node, queue_id)
        status: QueueStatus = await ctx.activity(
            "queue_poll",
            QueuePoll(queue_id=queue_id, call_sid=_sid(ctx), hold=self._hold_spec(ctx)),
            result_type=QueueStatus,
        )
        if status.outcome == "assigned":
            return self._assigned(ctx, status, [])
        if status.outcome in ("gone", "unknown_queue"):
            # Redis lost the entry (rebuilt from an older state): join again, keeping the node.
            return await self._join(ctx, node, queue_id, lead=[])
        if _now_s(ctx) >= float(st["deadline_s"]):
            return await self._overflow(ctx, node, [], "timeout", status)
        return self._hold(ctx, status, [])

    def _hold_spec(self, ctx: Context) -> HoldSpec:
        """This node's hold rendering after the segment about to be handed out."""
        st = ctx.node_state
        now = _now_s(ctx)
        last = st.get("last_announce_s")
        if last is None or now - float(last) >= float(st["interval_s"]):
            last = now  # the segment this turn hands out announces
        return HoldSpec(
            deadline_ms=int(float(st["deadline_s"]) * 1000),
            every_ms=int(float(st["interval_s"]) * 1000),
            last_announce_ms=int(float(last) * 1000),
            segment_s=HOLD_SEGMENT_S,
            music_url=st.get("music"),
            hold_message=ctx.render(st["hold_message"]) if st.get("hold_message") else None,
            announce_position=bool(st.get("announce_position")),
            announce_wait=bool(st.get("announce_wait")),
            offer_callback=bool(st.get("offer_callback")),
        )

    def _hold(self, ctx: Context, status: QueueStatus, lead: list[Any]) -> Step:
        st = ctx.node_state
        now = _now_s(ctx)
        remaining = max(1.0, float(st["deadline_s"]) - now)
        segment = min(HOLD_SEGMENT_S, remaining)
        last = st.get("last_announce_s")
        due = last is None or now - float(last) >= float(st["interval_s"])
        words: list[str] = []
        if due:
            st["last_announce_s"] = now
            words = self._announcement(ctx, status)
        data = {"position": status.position, "ewtS": status.ewt_s, "waitedS": status.waited_s}
        if due and st.get("offer_callback"):
            text = " ".join([*words, CALLBACK_OFFER])
            gather = Gather(
                prompt=[Say(text=text)],
                max_digits=1,
                min_digits=1,
                finish_on_key="",
                timeout_s=CALLBACK_GATHER_S,
            )
            return Step(emit=[*lead, gather], wait=True, data=data)
        announcements: list[Any] = [Say(text=" ".join(words))] if words else []
        hold = Hold(duration_s=segment, music_url=st.get("music"), announcements=announcements)
        return Step(emit=[*lead, hold], wait=True, data=data)

    def _announcement(self, ctx: Context, status: QueueStatus) -> list[str]:
        st = ctx.node_state
        return announcement(
            position=status.position,
            ewt_s=status.ewt_s,
            hold_message=ctx.render(st["hold_message"]) if st.get("hold_message") else None,
            announce_position=bool(st.get("announce_position")),
            announce_wait=bool(st.get("announce_wait")),
        )

    def _assigned(self, ctx: Context, status: QueueStatus, lead: list[Any]) -> Step:
        ctx.cancel_on_end(QUEUE_KEY)
        ctx.variables["queue_wait_s"] = round(status.waited_s, 1)
        if status.lease:
            ctx.variables[ROUTING_VAR] = {
                "agentId": status.agent_id,
                "lease": status.lease,
                "phone": status.phone,
                "queueId": status.queue_id,
            }
            ctx.on_end(
                AGENT_KEY,
                "routing_release",
                ReleaseRequest(call_sid=_sid(ctx), lease=status.lease, queue_id=status.queue_id),
            )
        return Step(
            emit=lead,
            port="next",
            data={"agentId": status.agent_id, "waitedS": status.waited_s},
        )

    async def _overflow(
        self, ctx: Context, node: Any, lead: list[Any], why: str, status: QueueStatus
    ) -> Step:
        st = ctx.node_state
        queue_id = int(st["queue_id"])
        target = st.get("overflow_queue_id")
        moving = target is not None and target != queue_id and not st.get("overflowed")
        if why == "timeout":
            await ctx.activity(
                "queue_leave",
                QueueLeave(
                    queue_id=queue_id,
                    call_sid=_sid(ctx),
                    status="overflowed" if moving else "timed_out",
                    release=True,
                ),
            )
            ctx.cancel_on_end(QUEUE_KEY)
        data = {"queueId": queue_id, "overflow": why, "waitedS": status.waited_s}
        if moving:
            step = await self._join(ctx, node, int(target), lead=lead, overflowed=True)
            step.data = {**data, **step.data, "overflowQueueId": target}
            return step
        return Step(emit=lead, port=why, data=data)

    async def _callback(self, ctx: Context, node: Any, queue_id: int) -> Step:
        result: QueueCallbackResult = await ctx.activity(
            "queue_callback",
            QueueCallback(
                queue_id=queue_id, call_sid=_sid(ctx), phone=str(ctx.variables.get("caller") or "")
            ),
            result_type=QueueCallbackResult,
        )
        if result.callback_id is None:
            # Assigned meanwhile (or gone): carry on as a poll would.
            status: QueueStatus = await ctx.activity(
                "queue_poll",
                QueuePoll(queue_id=queue_id, call_sid=_sid(ctx)),
                result_type=QueueStatus,
            )
            if status.outcome == "assigned":
                return self._assigned(ctx, status, [])
            return self._hold(ctx, status, [])
        ctx.cancel_on_end(QUEUE_KEY)
        ctx.variables["callback_id"] = result.callback_id
        sms_steps.callback_requested(ctx, node, result.callback_id, result.position)
        return Step(
            emit=[Say(text=CALLBACK_THANKS), Hangup(reason="callback_requested")],
            hangup_reason="callback_requested",
            data={"callbackId": result.callback_id, "position": result.position},
        )


# --- transfer ------------------------------------------------------------------------------


class TransferHandler:
    async def enter(self, ctx: Context, node: Any) -> Step:
        ctx.node_state.update(attempt=0, tried=[], lease=None, agent_id=None)
        sms_steps.arm_missed_call(ctx, node)
        return await self._dial_next(ctx, node, prompt(ctx, node))

    def _lease_s(self, node: Any) -> float:
        return float(_cfg(node, "ring_timeout", 30)) + DIAL_TIME_LIMIT_S + DEFAULT_GRACE_S + 40

    async def _dial_next(self, ctx: Context, node: Any, lead: list[Instruction]) -> Step:
        st = ctx.node_state
        st["attempt"] = attempt = int(st["attempt"]) + 1
        number = _cfg(node, "phone_number")
        pick = AgentPick()
        if number is None:
            pick = await self._agent(ctx, node, attempt)
            if pick.agent_id is None or not pick.phone:
                port = "noAnswer"
                return Step(
                    emit=lead,
                    port=port,
                    data={"attempt": attempt, "noAgent": True, "tried": list(st["tried"])},
                )
            number = pick.phone
            st.update(lease=pick.lease, agent_id=pick.agent_id)
            ctx.on_end(
                AGENT_KEY,
                "routing_release",
                ReleaseRequest(call_sid=_sid(ctx), lease=pick.lease or "", agent_id=pick.agent_id),
            )
        dial = Dial(
            numbers=[str(number)],
            ring_timeout_s=int(_cfg(node, "ring_timeout", 30)),
            time_limit_s=DIAL_TIME_LIMIT_S,
            record=bool(_cfg(node, "record", False)),
            agent_id=pick.agent_id,
        )
        return Step(
            emit=[*lead, dial],
            wait=True,
            data={"attempt": attempt, "agentId": pick.agent_id, "number": _masked(str(number))},
        )

    async def _agent(self, ctx: Context, node: Any, attempt: int) -> AgentPick:
        st = ctx.node_state
        held = ctx.variables.pop(ROUTING_VAR, None)
        if isinstance(held, dict) and held.get("lease"):
            # The queue reserved an agent for this caller: keep it for the dial.
            pick: AgentPick = await ctx.activity(
                "routing_dial",
                DialLease(
                    call_sid=_sid(ctx), lease=str(held["lease"]), lease_s=self._lease_s(node)
                ),
                result_type=AgentPick,
            )
            if pick.agent_id is not None:
                return pick
            ctx.cancel_on_end(AGENT_KEY)  # the reservation lapsed; reserve afresh below
        agent_id = _cfg(node, "agent_id")
        agents = _cfg(node, "agents")
        ids = (
            [int(agent_id)]
            if agent_id is not None
            else ([int(a) for a in agents] if agents else None)
        )
        skills = _cfg(node, "skills") or {}
        request = ReserveRequest(
            call_sid=_sid(ctx),
            lease=f"{_sid(ctx)}:{node.id}:{attempt}",
            strategy=str(_cfg(node, "routing_strategy", "longest_idle")),
            skills={str(k): int(v) for k, v in dict(skills).items()},
            team=_cfg(node, "team"),
            agent_ids=ids,
            exclude=list(st["tried"]),
            scope=f"node:{node.id}",
            lease_s=self._lease_s(node),
            on_call=True,
        )
        return await ctx.activity("routing_reserve", request, result_type=AgentPick)

    async def resume(self, ctx: Context, node: Any, event: CallEvent) -> Step:
        st = ctx.node_state
        status = event.dial_status if event.kind == EventKind.dial_result else None
        status = status or DialStatus.failed
        lease, agent_id = st.get("lease"), st.get("agent_id")
        answered = status == DialStatus.completed
        data: dict[str, Any] = {
            "attempt": st["attempt"],
            "agentId": agent_id,
            "dialStatus": status.value,
            "durationS": event.dial_duration_s,
        }
        if lease:
            await ctx.activity(
                "routing_release",
                ReleaseRequest(
                    call_sid=_sid(ctx),
                    lease=lease,
                    handled=answered,
                    agent_id=agent_id,
                    queue_id=_int(ctx.variables.get("queue_id"), 0) or None,
                    handle_s=event.dial_duration_s,
                    queue_wait_s=ctx.variables.get("queue_wait_s"),
                ),
            )
            ctx.cancel_on_end(AGENT_KEY)
            st.update(lease=None)
        if answered:
            if agent_id is not None:
                ctx.variables["agent_id"] = agent_id
            sms_steps.agent_answered(ctx)
            return Step(port="completed", data=data)
        if agent_id is not None:
            st["tried"] = [*st["tried"], agent_id]
        if int(st["attempt"]) < int(_cfg(node, "max_attempts", 3)):
            step = await self._dial_next(ctx, node, [])
            step.data = {**data, **step.data}
            return step
        port = "noAnswer" if status in (DialStatus.no_answer, DialStatus.canceled) else "failed"
        return Step(port=port, data=data)


def _pick(node_value: Any, default: Any) -> Any:
    return default if node_value is None else node_value


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _masked(number: str) -> str:
    return f"…{number[-4:]}"
