"""CallWorkflow: one phone call, walking a pinned flow version, one carrier turn per update.

Each webhook reaches `advance` as an update and gets back the segment of instructions to
render. Non-interactive nodes run inside the same turn. The call ends by the carrier's status
callback (`end` signal), by a final hang-up reply, or — since Exotel says nothing when an
inbound caller hangs up — when no webhook returns within the pending reply's expected
duration plus a grace period. Every ending goes through `_finish`, which writes the final
record exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.calls import (
        MAX_TURNS_PER_CALL,
        CallCursor,
        CallFinalRecord,
        CallOutcome,
        CallStart,
        CallStartedRecord,
        CallState,
        CarrierStatus,
        CarrierStatusRequest,
        NodeVisit,
        Opening,
        TurnReply,
        VisitsRecord,
        WalkedTurn,
        silent_after_s,
    )
    from core.flows.schema import parse_frozen
    from core.telephony import (
        CallEvent,
        EventKind,
        Hangup,
        Instruction,
        Reply,
        Say,
        as_answer_to,
        segment,
    )
    from core.temporal import CALL_STATUS, CURRENT_NODE
    from workflows.nodes import GOODBYE, render
    from workflows.walker import FlowWalker, initial_variables, reply_of


# DB writes must never be lost: retry until the database is back, but don't hold the caller.
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
WRITE_TIMEOUT = timedelta(seconds=10)
# Node visits held back between writes (bounded so a long call still lands in batches).
VISIT_BATCH = 12
# How many times a silent call is re-checked with the carrier before it is ended anyway.
MAX_CARRIER_CONFIRMATIONS = 3
# Calls begun since: the final record is a local activity unless an update waits for the
# hang-up's answer (no activity task and no extra workflow task on the server), and a final
# reply's node goes to the index with the status.
FINAL_WRITE_LOCAL = "final-write-local"
# How long to wait for the very first webhook's update after a start without one.
FIRST_TURN_WAIT_S = 60.0


class _Ctx:
    """What node handlers see of the running call (the `Context` protocol in workflows.nodes).

    Handlers stay free of Temporal details: they ask for activities through `activity`, read
    the clock through `now`, register clean-up for the call's one end path through `on_end`,
    and read what other parts of the system told this call (e.g. "an agent is reserved for
    you") from `inbox`, which the `notify` signal fills.
    """

    def __init__(self, variables: dict[str, Any]) -> None:
        self.variables = variables
        self.node_state: dict[str, Any] = {}
        self.inbox: dict[str, Any] = {}
        self.end_actions: dict[str, tuple[str, Any]] = {}

    def render(self, template: str | None) -> str:
        return render(template, self.variables)

    def now(self) -> datetime:
        return workflow.now()

    async def activity(
        self,
        name: str,
        arg: Any,
        *,
        result_type: type | None = None,
        timeout_s: float = 10.0,
        local: bool = True,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Run activity `name` now and return its result (the turn waits for it).

        Local activities (the default) cost no extra server round trips, which keeps a turn
        that needs a quick lookup inside the webhook budget; pass local=False for slow or
        long-retried work so it is scheduled on the task queue like any other activity.
        """
        policy = retry or RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=2))
        timeout = timedelta(seconds=timeout_s)
        if local:
            return await workflow.execute_local_activity(
                name, arg, result_type=result_type, start_to_close_timeout=timeout,
                retry_policy=policy,
            )
        return await workflow.execute_activity(
            name, arg, result_type=result_type, start_to_close_timeout=timeout,
            retry_policy=policy,
        )

    def on_end(self, key: str, activity: str, arg: Any) -> None:
        """Run `activity(arg)` when the call ends, however it ends (replaces an earlier
        registration under the same key)."""
        self.end_actions[key] = (activity, arg)

    def cancel_on_end(self, key: str) -> None:
        self.end_actions.pop(key, None)


@workflow.defn(name="CallWorkflow")
class CallWorkflow:
    @workflow.init
    def __init__(self, start: CallStart) -> None:
        self.start = start
        self.flow = parse_frozen(start.definition, start.definition_checksum)
        self.ctx = _Ctx(initial_variables(start))
        self.started_at = workflow.now()
        self.status = "in_progress"
        self.turn = 0
        self.walker = FlowWalker(self.flow, self.ctx, workflow.now)
        self.queued: list[list[Instruction]] = []  # segments still to hand out this turn
        self.pending: Reply | None = None
        self.pending_since: datetime | None = None
        self.final_sent = False
        self.hangup_reason: str | None = None
        self.end_event: CallEvent | None = None
        self.writes: list[asyncio.Task[Any]] = []
        self.finished = False
        self.confirmations = 0
        self.turn_lock = asyncio.Lock()
        self.indexed_node: str | None = None  # CurrentNode as last written to the index
        self.walked_turn: WalkedTurn | None = None  # the last turn the API walked (signal)
        self.final_by_update = False  # the hang-up reply went out as an update's answer
        # Carried by the workflow's writes (visit batches, the final record), never on its own.
        self.start_record: CallStartedRecord | None = CallStartedRecord.of(
            start, workflow_id=workflow.info().workflow_id, started_at=self.started_at
        )
        if start.opening is not None:
            self._resume_opening(start.opening)

    def _resume_opening(self, opening: Opening) -> None:
        """Take over from the first turn the API walked and answered before starting us:
        the caller has heard `opening.reply`; the call waits where that walk stopped (its
        node is already in the CurrentNode search attribute the API started us with)."""
        self.turn = 1
        self._take_walk(opening, changed_from=0)
        self.indexed_node = opening.node_id
        self.pending = opening.reply
        self.pending_since = self.started_at
        self.queued = list(opening.reply.then)

    # --- run: wait for the end ---------------------------------------------------------

    @workflow.run
    async def run(self, start: CallStart) -> CallOutcome:
        status, reason = await self._wait_for_end()
        return await self._finish(status, reason)

    async def _wait_for_end(self) -> tuple[str, str]:
        """Wait for the end with one silence timer that is re-armed only when it fires.

        Turns move the deadline but never touch the timer: re-arming on every turn would add
        a cancelled and a new timer to the history of each turn, and the history is what the
        Temporal server spends its time writing.
        """
        while True:
            if self._over():
                if self.end_event is not None:
                    return self._status_from_carrier(self.end_event)
                return "completed", self.hangup_reason or "completed"
            remaining = self._silence_deadline() - workflow.now()
            if remaining.total_seconds() <= 0:
                if not workflow.all_handlers_finished():
                    # A turn is still being worked on (e.g. an API node): that is not silence.
                    remaining = timedelta(seconds=self.start.grace_s)
                elif await self._still_holding():
                    continue  # the API answered the caller's hold polls meanwhile
                elif await self._carrier_says_live():
                    self.pending_since = workflow.now()  # one more full period
                    continue
                else:
                    return self._silent_end()
            try:
                await workflow.wait_condition(self._over, timeout=remaining)
            except TimeoutError:
                continue  # the deadline may have moved since: look again

    def _over(self) -> bool:
        """The carrier ended the call, or our hang-up reply has gone out."""
        return self.end_event is not None or (
            self.final_sent and workflow.all_handlers_finished()
        )

    def _silence_deadline(self) -> datetime:
        since = self.pending_since or self.started_at
        return since + timedelta(seconds=self._deadline_s())

    def _deadline_s(self) -> float:
        if self.pending is None:
            return FIRST_TURN_WAIT_S
        return silent_after_s(self.pending, self.start.grace_s)

    async def _still_holding(self) -> bool:
        """A queued caller's hold polls are answered by the API from Redis, not by updates:
        the caller is there if the API saw them after we last did (moves the deadline)."""
        awaiting = self.pending.awaiting if self.pending is not None else None
        if awaiting is None or awaiting.kind != "hold" or self.pending_since is None:
            return False
        seen_ms = await workflow.execute_local_activity(
            "call_hold_seen",
            self.start.call_sid,
            result_type=int | None,  # type: ignore[arg-type]
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=1)),
        )
        if seen_ms is None:
            return False
        seen = datetime.fromtimestamp(seen_ms / 1000, tz=UTC)
        if seen <= self.pending_since:
            return False
        self.pending_since = seen
        return True

    async def _carrier_says_live(self) -> bool:
        """Ask the carrier's REST API whether a call we stopped hearing from is still up."""
        if self.confirmations >= MAX_CARRIER_CONFIRMATIONS:
            return False
        self.confirmations += 1
        try:
            status = await workflow.execute_activity(
                "carrier_call_status",
                CarrierStatusRequest(call_sid=self.start.call_sid, carrier=self.start.carrier),
                result_type=CarrierStatus,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(
                    maximum_attempts=3, maximum_interval=timedelta(seconds=5)
                ),
            )
        except ActivityError:
            # The carrier cannot tell us: trust the silence rather than hold the call open.
            workflow.logger.warning("carrier status unavailable for %s", self.start.call_sid)
            return False
        if status.known:
            self.ctx.variables["carrier_status"] = status.status
        return status.live

    def _silent_end(self) -> tuple[str, str]:
        """No webhook came back in time: the caller hung up somewhere we cannot see."""
        waiting_on = self.pending.awaiting if self.pending else None
        if waiting_on is not None and waiting_on.kind == "dial":
            return "completed", "ended_during_dial"
        return "abandoned", "no_webhook"

    def _status_from_carrier(self, event: CallEvent) -> tuple[str, str]:
        carrier_status = (event.call_status or "completed").lower()
        if carrier_status in ("failed", "busy", "no-answer", "canceled"):
            return "failed", f"carrier_{carrier_status}"
        if self.final_sent:
            return "completed", self.hangup_reason or "completed"
        waiting_on = self.pending.awaiting if self.pending else None
        if waiting_on is not None and waiting_on.kind == "dial":
            return "completed", "caller_hung_up_after_dial"
        return "abandoned", "caller_hung_up"

    async def _finish(self, status: str, reason: str) -> CallOutcome:
        """The one end path: close the open visit, flush writes, write the final record once."""
        self.finished = True
        now = workflow.now()
        if self.visits and self.visits[-1].exited_at is None:
            self.walker.close_visit(self.visits[-1], port=None, at=now)
        self.status = status
        last_visits = [self.unsent_visits[k] for k in sorted(self.unsent_visits)]
        self.unsent_visits = {}
        new_style = workflow.patched(FINAL_WRITE_LOCAL)
        index = [CALL_STATUS.value_set(status)]
        if new_style and self.node_id is not None and self.node_id != self.indexed_node:
            self.indexed_node = self.node_id  # a final reply left its node to this write
            index.append(CURRENT_NODE.value_set(self.node_id))
        workflow.upsert_search_attributes(index)
        duration = (now - self.started_at).total_seconds()
        path = [v.node_id for v in self.visits]
        recording = self.ctx.variables.get("recording_url") or None
        if self.writes:
            await asyncio.gather(*self.writes)
        await self._run_end_actions()
        final = CallFinalRecord(
            call_sid=self.start.call_sid,
            # Still set unless an old-style first-turn write took it (idempotent insert).
            started=self.start_record,
            visits=last_visits,
            status=status,
            reason=reason,
            ended_at=now,
            duration_s=duration,
            path=path,
            variables=self.ctx.variables,
            recording_url=recording,
        )
        # Retried until the database takes it either way. As a local activity it costs the
        # server no activity task and no further workflow task (a fifth of a call's work), but
        # the workflow task it runs in completes only when it is done: after a hang-up the API
        # walked (or a silent end) nobody waits for that; after a hang-up sent as an update's
        # answer the caller would (a database outage would hold their goodbye), so not then.
        local = new_style and not self.final_by_update
        run = workflow.execute_local_activity if local else workflow.execute_activity
        await run(
            "finalize_call", final, start_to_close_timeout=WRITE_TIMEOUT, retry_policy=WRITE_RETRY
        )
        return CallOutcome(
            call_sid=self.start.call_sid,
            status=status,
            reason=reason,
            turns=self.turn,
            duration_s=duration,
            path=path,
            recording_url=recording,
        )

    async def _run_end_actions(self) -> None:
        """Release what handlers hold (agent reservations, queue places) whatever the ending:
        retried until they succeed, all at once."""
        actions = list(self.ctx.end_actions.values())
        self.ctx.end_actions = {}
        if actions:
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        name, arg, start_to_close_timeout=WRITE_TIMEOUT, retry_policy=WRITE_RETRY
                    )
                    for name, arg in actions
                )
            )

    # --- the carrier's turns -----------------------------------------------------------

    @workflow.update(name="advance")
    async def advance(self, event: CallEvent) -> TurnReply:
        # A handler awaiting an activity yields; a second turn must not walk meanwhile.
        async with self.turn_lock:
            reply = await self._advance(event)
        if reply.final:
            self.final_by_update = True  # someone waits for this activation's completion
        return TurnReply.of(reply, self._cursor(reply))

    def _cursor(self, reply: Reply) -> CallCursor | None:
        """Where the call stands after `reply`, for the API to walk the next turn from
        (api/opening.py), or None when that turn is the workflow's whatever it brings: an
        action is registered for the call's end (a queue place, an agent, an SMS: the API's
        walk could not cancel it), a message waits for the handlers, the call is ending, or
        `reply` is not what the call waits on now (an answer given again)."""
        if (
            reply is not self.pending
            or reply.final
            or self.finished
            or self.ctx.end_actions
            or self.ctx.inbox
            or self.node_id is None
            or self.start.definition_checksum is None
        ):
            return None
        return CallCursor(
            flow_id=self.start.flow_id,
            flow_version=self.start.flow_version,
            definition_checksum=self.start.definition_checksum,
            dialect=self.start.dialect,
            last=WalkedTurn(
                update_id=workflow.current_update_info().id,
                reply=reply,
                node_id=self.node_id,
                visits=self.visits,
                variables=self.ctx.variables,
                node_state=self.ctx.node_state,
            ),
            silent_after=self._silence_deadline(),
        )

    async def _advance(self, event: CallEvent) -> Reply:
        opening = self.start.opening
        if opening is not None and workflow.current_update_info().id == opening.update_id:
            # The first webhook again (a carrier retry, or the API re-sending it after a start
            # it could not confirm): the caller gets what the API answered it, nothing moves.
            return opening.reply
        walked = self.walked_turn
        if walked is not None and workflow.current_update_info().id == walked.update_id:
            # The API walked this webhook itself and told us (`walked`), then could not be
            # sure the caller heard it and asks again: the same reply, nothing moves.
            return walked.reply
        self.turn += 1
        if event.call_status:
            self.ctx.variables["call_status"] = event.call_status
        if self.turn > MAX_TURNS_PER_CALL:
            return self._hand_out([Say(text=GOODBYE), Hangup(reason="max_turns")], "max_turns")
        # The API hands out the later pieces of a turn itself (Reply.then) and says how many.
        del self.queued[: event.served]
        if self.queued and event.kind != EventKind.ended:
            # Pieces are left, so the carrier is back from a prompts-only piece (whatever it
            # repeats of earlier parameters): the API lost track of them, hand out the rest.
            return self._reply_pieces(self.queued)
        event = as_answer_to(self.pending, event)
        try:
            return await self._walk(event)
        except ApplicationError:
            raise
        except Exception as err:  # a flow the validator let through, or a handler bug
            workflow.logger.exception("flow error on call %s", self.start.call_sid)
            self.ctx.variables["error"] = type(err).__name__
            return self._hand_out(
                [Say(text="Sorry, something went wrong. Please call again later."),
                 Hangup(reason="flow_error")],
                "flow_error",
            )

    @advance.validator
    def _validate_advance(self, event: CallEvent) -> None:
        if self.finished or self.end_event is not None:
            raise ApplicationError("call is over", type="CallOver", non_retryable=True)
        if event.call_sid != self.start.call_sid:
            raise ApplicationError("event for another call", type="WrongCall")

    @workflow.signal(name="end")
    def end(self, event: CallEvent) -> None:
        if self.end_event is None:
            self.end_event = event

    @workflow.signal(name="notify")
    def notify(self, message: dict[str, Any]) -> None:
        """A message for the call's handlers from elsewhere in the system, by `key`."""
        key = message.get("key")
        if isinstance(key, str) and key:
            self.ctx.inbox[key] = message.get("value")

    @workflow.signal(name="walked")
    def walked(self, turn: WalkedTurn) -> None:
        """A later turn the API walked and answered itself (api/opening.py), sent before the
        caller hears it: take it over as if this workflow had walked it.

        The API walks from where our last turn left the call (its cursor in Redis), so the
        turn must be the next one and the visits must continue ours; anything else (a turn
        running here meanwhile, a call already over) is not taken and logged."""
        last_open = len(self.visits) - 1
        if (
            self.finished
            or self.final_sent
            or self.end_event is not None
            or self.turn_lock.locked()
            or turn.reply.turn != self.turn + 1
            or [(v.seq, v.node_id) for v in turn.visits[: max(last_open, 0)]]
            != [(v.seq, v.node_id) for v in self.visits[: max(last_open, 0)]]
        ):
            workflow.logger.warning(
                "walked turn %s not taken on call %s (at turn %s)",
                turn.reply.turn, self.start.call_sid, self.turn,
            )
            return
        self.turn = turn.reply.turn
        self.walked_turn = turn
        # Our open visit (closed by the walk) and the new ones are still to be written.
        self._take_walk(turn, changed_from=max(last_open, 0))
        if turn.hangup_reason is not None:
            self.hangup_reason = turn.hangup_reason
        self._take_reply(turn.reply)

    def _take_walk(self, turn: WalkedTurn, *, changed_from: int) -> None:
        """The state a walk of the API's left (an opening or a `walked` turn): variables,
        handler state, node and visits; visits from `changed_from` on are still to write."""
        self.ctx.variables.clear()
        self.ctx.variables.update(turn.variables)
        self.ctx.node_state = dict(turn.node_state)
        self.walker.node_id = turn.node_id
        self.walker.visits = list(turn.visits)
        for visit in turn.visits[changed_from:]:
            self.walker.unsent_visits[visit.seq] = visit

    @workflow.query(name="state")
    def state(self) -> CallState:
        return CallState(
            call_sid=self.start.call_sid,
            flow_id=self.start.flow_id,
            flow_version=self.start.flow_version,
            status=self.status,
            current_node=self.node_id,
            variables=self.ctx.variables,
            pending=self.pending,
            turn=self.turn,
            history=self.visits,
            started_at=self.started_at,
            waiting_since=self.pending_since,
        )

    @workflow.query(name="pending")
    def pending_reply(self) -> Reply | None:
        return self.pending

    # --- walking the graph (workflows.walker) ------------------------------------------

    async def _walk(self, event: CallEvent) -> Reply:
        walked = await self.walker.walk(event)
        if walked.hangup_reason is not None:
            return self._hand_out(walked.emitted, walked.hangup_reason)
        return self._reply_segments(walked.emitted)

    @property
    def node_id(self) -> str | None:
        return self.walker.node_id

    @property
    def visits(self) -> list[NodeVisit]:
        return self.walker.visits

    @property
    def unsent_visits(self) -> dict[int, NodeVisit]:
        return self.walker.unsent_visits

    @unsent_visits.setter
    def unsent_visits(self, value: dict[int, NodeVisit]) -> None:
        self.walker.unsent_visits = value

    # --- replies -----------------------------------------------------------------------

    def _hand_out(self, instructions: list[Instruction], reason: str) -> Reply:
        self.hangup_reason = reason
        self.walker.node_id = self.visits[-1].node_id if self.visits else None
        return self._reply_segments(instructions)

    def _reply_segments(self, instructions: list[Instruction]) -> Reply:
        return self._reply_pieces(segment(instructions, self.start.dialect))

    def _reply_pieces(self, pieces: list[list[Instruction]]) -> Reply:
        """Answer the turn with its first piece and the rest in `then` for the API to hand
        out. The rest is also kept here, for the case the API loses track of it."""
        reply = reply_of(pieces, self.turn)
        self._take_reply(reply)
        return reply

    def _take_reply(self, reply: Reply) -> None:
        """`reply` is what the caller hears now: the call waits for its answer."""
        self.queued = list(reply.then)
        self.pending = reply
        self.pending_since = workflow.now()
        if reply.final:
            self.final_sent = True
        self._flush_visits()
        # Each upsert is a visibility write on the server: only when the node changes
        # (a menu repeated keeps its node).
        if (
            self.node_id is not None
            and self.node_id != self.indexed_node
            and not (reply.final and workflow.patched(FINAL_WRITE_LOCAL))
        ):
            self.indexed_node = self.node_id
            workflow.upsert_search_attributes([CURRENT_NODE.value_set(self.node_id)])

    # --- fire-and-forget writes --------------------------------------------------------

    def _flush_visits(self) -> None:
        """Write node visits in batches; the rest ride on the final record. Every activity
        costs the server an activity task and the worker a workflow task, so turns write only
        when a batch is full; live position comes from the `state` query and search
        attributes, the call's row and `call:started` from the API that started it.
        """
        if not self.unsent_visits:
            return
        if self.start.start_recorded:
            # The API wrote the start record when it started us: visits wait for a full
            # batch, and every write carries the start record (an idempotent insert) in case
            # the API could not.
            if len(self.unsent_visits) < VISIT_BATCH:
                return
            started = self.start_record
        else:  # started by something that does not record starts (or before the API did)
            if self.start_record is None and len(self.unsent_visits) < VISIT_BATCH:
                return
            started = self._take_start_record()
        record = VisitsRecord(
            call_sid=self.start.call_sid,
            started=started,
            visits=[self.unsent_visits[k] for k in sorted(self.unsent_visits)],
            current_node=self.node_id,
            path=[v.node_id for v in self.visits],
        )
        self.unsent_visits = {}
        self._write("record_node_visits", record)

    def _take_start_record(self) -> CallStartedRecord | None:
        record, self.start_record = self.start_record, None
        return record

    def _write(self, activity: str, arg: Any) -> None:
        """Start a DB write without awaiting it: the caller's turn never waits for analytics.

        Writes of one call run one after another, so a visit never lands before the call's
        start record or after a newer visit (no retry storms, no reordering).
        """
        previous = next((w for w in reversed(self.writes) if not w.done()), None)
        self.writes = [w for w in self.writes if not w.done()]
        if previous is None:
            self.writes.append(
                workflow.start_activity(
                    activity, arg, start_to_close_timeout=WRITE_TIMEOUT, retry_policy=WRITE_RETRY
                )
            )
            return
        self.writes.append(asyncio.create_task(self._write_after(previous, activity, arg)))

    async def _write_after(self, previous: asyncio.Future[Any], activity: str, arg: Any) -> None:
        await previous
        await workflow.execute_activity(
            activity, arg, start_to_close_timeout=WRITE_TIMEOUT, retry_policy=WRITE_RETRY
        )

