"""The real CallGateway: carrier events to CallWorkflow updates, inside the webhook budget.

- The first data-less event of a call: when the flow's opening needs nothing but the flow and
  the clock, the API walks it itself (api.opening) and starts the workflow from there with a
  plain start (conflict policy FAIL: a start that finds it there asks it under the same update
  id instead); otherwise update-with-start (conflict policy USE_EXISTING, so a carrier retry
  never starts a second one). Reuse policy REJECT_DUPLICATE either way, so a finished call is
  never restarted by a late webhook.
- A later turn that needs only the flow and the clock is walked by the API too, from the
  call's cursor (Redis: where the last turn left it, written after the API's own walks and
  from the cursor a workflow update hands back), and given to the workflow by the `walked`
  signal before the caller hears it. A turn that leaves no cursor drops the old one, so the
  API never walks from a place the call has left; the workflow refuses a walk out of step.
- Update ids come from the carrier request, so a retried webhook never advances the call twice.
- If the workflow has not answered inside the budget, the caller gets a short hold and the
  original update is remembered in Redis; the next webhook of that call re-sends it under the
  same update id, so Temporal hands back the reply the caller never heard (or runs it now,
  if it never reached a worker). The call goes on; nothing is skipped.
- The last reply is cached in Redis so Exotel's applet endpoints (greeting, gather, connect)
  read it without a workflow query.
- A queued caller's return from a hold segment is answered from Redis too (core.routing.hold:
  the next segment with the live position), unless routing says the workflow must act.
- A reply's later pieces (`Reply.then`: Exotel plays one applet per webhook) are handed out
  from Redis on the carrier's next returns, without a workflow update: a turn that speaks and
  then hangs up, or plays an info prompt before a menu, costs the Temporal server one update
  instead of two or three. The next event forwarded to the workflow says how many were served.
- Keys typed into a sensitive gather (card, account number, PIN) never reach Temporal: they
  are sealed in the call vault (core.flows.vault) and the workflow gets a reference and the
  mask; the vault is dropped when the call ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.carriers.gateway import CallOver, UnknownCall
from api.opening import ScheduleLoader, walk_later, walk_opening
from core.calls import (
    ADVANCE_UPDATE,
    CALL_WORKFLOW,
    END_SIGNAL,
    MAX_TURNS_PER_CALL,
    WALKED_SIGNAL,
    CallCursor,
    CallStart,
    TurnReply,
    WalkedTurn,
    silent_after_s,
)
from core.config import Settings
from core.flows.inputs import mask_value
from core.flows.schema import FlowDefinition, frozen, parse_frozen
from core.flows.vault import seal, sealed_ref, vault_key
from core.metrics import API_WALKED_TURNS, FALLBACK_REPLIES
from core.routing.hold import HoldPoller
from core.telephony import (
    CallEvent,
    Dialect,
    EventKind,
    Gather,
    Hangup,
    Pause,
    Reply,
    Say,
    SealedDigits,
    expected_duration_s,
)
from core.temporal import (
    CALL_STATUS,
    CALLER_HASH,
    CURRENT_NODE,
    FLOW_ID,
    FLOW_VERSION,
    call_workflow_id,
)

log = structlog.get_logger(__name__)

HOLD_TEXT = "Please stay on the line."
NOT_IN_SERVICE = "Sorry, this number is not in service. Goodbye."
REPLY_TTL_S = 6 * 3600
CALL_TIMEOUT = timedelta(hours=6)
# The API walks a turn itself only this long before the workflow would call the caller gone.
WALK_MARGIN = timedelta(seconds=2)

# A reply's later pieces, handed out one per carrier return. KEYS: the call's piece hash, its
# cached-reply key. ARGV: the update id of this webhook, the TTL. A retried webhook (same id)
# gets the piece it got before; a retry of the webhook that brought the reply gets its head.
# Returns {served, piece} when it hands one out, {served} when the pieces are used up (or there
# are none), which the caller forwards to the workflow.
_NEXT_PIECE = """
if redis.call('HGET', KEYS[1], 'origin') == ARGV[1] then
  local head = redis.call('HGET', KEYS[1], 'p:0')
  redis.call('SET', KEYS[2], head, 'EX', tonumber(ARGV[2]))
  return {0, head}
end
local seen = redis.call('HGET', KEYS[1], 'u:' .. ARGV[1])
if seen then
  return {tonumber(seen), redis.call('HGET', KEYS[1], 'p:' .. seen)}
end
local served = tonumber(redis.call('HGET', KEYS[1], 'served') or '0')
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
if served >= total then
  return {served}
end
served = served + 1
local piece = redis.call('HGET', KEYS[1], 'p:' .. served)
redis.call('HSET', KEYS[1], 'served', served, 'u:' .. ARGV[1], served)
redis.call('SET', KEYS[2], piece, 'EX', tonumber(ARGV[2]))
return {served, piece}
"""

# Store a new reply: its head as the cached reply, its later pieces in the piece hash. The same
# update answered twice (a carrier retry racing the first attempt) keeps the pieces served.
# KEYS: piece hash, cached-reply key. ARGV: origin update id, TTL, head JSON, piece JSONs...
_STORE_REPLY = """
if redis.call('HGET', KEYS[1], 'origin') == ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
local total = #ARGV - 3
redis.call('HSET', KEYS[1], 'origin', ARGV[1], 'served', 0, 'total', total, 'p:0', ARGV[3])
for i = 1, total do
  redis.call('HSET', KEYS[1], 'p:' .. i, ARGV[i + 3])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[2]))
return total
"""


class TemporalUnavailable(RuntimeError):
    """The API has no Temporal connection (yet): callers are held, not dropped."""


class FlowNotFound(LookupError):
    """No published flow answers this number and no default flow is published."""


# (called, custom field) -> (flow id, version, name, definition[, checksum]):
# repositories.flows.ResolvedFlow.
FlowResolver = Callable[[str | None, str | None], Awaitable[tuple[Any, ...] | None]]
# (flow id, version) -> (definition, checksum): repositories.flows.make_version_loader.
VersionLoader = Callable[[int, int], Awaitable[tuple[dict[str, Any], str] | None]]


def _awaits_sensitive(cached: str) -> bool:
    """Whether the reply the caller last heard ends in a sensitive gather."""
    if '"sensitive":true' not in cached:  # cheap test before parsing
        return False
    awaiting = Reply.model_validate_json(cached).awaiting
    return isinstance(awaiting, Gather) and awaiting.sensitive


def _caller_hash(caller: str | None) -> str:
    return hashlib.sha256((caller or "anonymous").encode()).hexdigest()[:16]


class TemporalCallGateway:
    def __init__(
        self,
        client: Client | Callable[[], Client | None],
        redis: aioredis.Redis,
        settings: Settings,
        resolve_flow: FlowResolver,
        record_start: Callable[[CallStart, datetime], Awaitable[None]] | None = None,
        schedules: ScheduleLoader | None = None,
        walk_turns: bool = False,
        load_version: VersionLoader | None = None,
    ) -> None:
        # A callable lets the API start before Temporal answers (it connects in the background).
        self._client = client
        self.redis = redis
        self.settings = settings
        self.resolve_flow = resolve_flow
        self.budget_s = settings.webhook_budget_ms / 1000
        self._next_piece = redis.register_script(_NEXT_PIECE)
        self.hold_poller = HoldPoller(redis)
        self._store_reply = redis.register_script(_STORE_REPLY)
        # Writes a started call's row and live event (core.call_records); None: the workflow's
        # own writes make the row.
        self.record_start = record_start
        # Business hours for first turns the API walks itself (api.opening); None: every
        # first turn goes through the workflow (update-with-start).
        self.schedules = schedules
        # Later turns the API walks itself too, from the call's cursor (needs `schedules`);
        # flows this process has not parsed yet come from `load_version`.
        self.walk_turns = walk_turns and schedules is not None
        self.load_version = load_version
        self._background: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> Client:
        client = self._client() if callable(self._client) else self._client
        if client is None:
            raise TemporalUnavailable("not connected to Temporal yet")
        return client

    # --- keys ----------------------------------------------------------------------------

    @staticmethod
    def _fallback_key(call_sid: str) -> str:
        return f"call:{call_sid}:undelivered"

    @staticmethod
    def _reply_key(call_sid: str) -> str:
        return f"call:{call_sid}:reply"

    @staticmethod
    def _pieces_key(call_sid: str) -> str:
        return f"call:{call_sid}:pieces"

    @staticmethod
    def _cursor_key(call_sid: str) -> str:
        return f"call:{call_sid}:cursor"

    # --- CallGateway ---------------------------------------------------------------------

    async def advance(
        self, event: CallEvent, *, update_id: str, dialect: Dialect, start: bool
    ) -> Reply:
        sid = event.call_sid
        undelivered, cached, (served, *piece), cursor = await self._call_state(sid, update_id)
        had_cursor = cursor is not None
        if piece and not undelivered:
            return Reply.model_validate_json(piece[0])
        if cached and not undelivered and event.kind != EventKind.ended:
            held = await self._answer_hold_poll(sid, cached)
            if held is not None:
                return held
        event = event.model_copy(update={"served": int(served)})
        if start and cached:
            # We already answered this call: a plain update, no flow lookup, no start.
            start = False
        if undelivered:
            # The caller never heard our last answer: ask for it again under its own id (its
            # keys were sealed or dropped when it was first received).
            event = CallEvent.model_validate_json(undelivered["event"])
            update_id = undelivered["update_id"]
            start = undelivered.get("start") == "1"
            cursor = None
        elif event.digits and cached:
            if '"gather"' not in cached:
                # Exotel repeats the last keys on later requests: after a prompt they answer
                # nothing (the workflow would ignore them) and may be a card number.
                event = event.model_copy(update={"digits": None})
            elif _awaits_sensitive(cached):
                event = await self._seal(event, update_id)
        try:
            reply, moved = await asyncio.wait_for(
                self._send(
                    event, update_id=update_id, dialect=dialect, start=start, cursor=cursor
                ),
                timeout=self.budget_s,
            )
        except (TimeoutError, TemporalUnavailable, WorkflowUpdateRPCTimeoutOrCancelledError):
            # No worker answered in time (down, overloaded, restarting): hold the caller.
            return await self._fallback(event, update_id, start)
        except FlowNotFound:
            return await self._not_in_service(event, dialect)
        except UnknownCall as err:
            if cached:  # we answered it before: it ended and its history is gone
                raise CallOver(event.call_sid) from err
            raise
        if undelivered:
            await self.redis.delete(self._fallback_key(sid))
        head, *rest = reply.pieces()
        await self._store_reply(
            keys=[self._pieces_key(sid), self._reply_key(sid)],
            args=[update_id, REPLY_TTL_S, head.model_dump_json(),
                  *(piece.model_dump_json() for piece in rest)],
        )
        if moved is not None:  # the cursor moves to where this turn left the call
            await self.redis.set(self._cursor_key(sid), moved.model_dump_json(), ex=REPLY_TTL_S)
        elif had_cursor:  # the next turn is the workflow's: the call has left the cursor
            await self.redis.delete(self._cursor_key(sid))
        return head

    async def _seal(self, event: CallEvent, update_id: str) -> CallEvent:
        """Digits answering a sensitive gather: into the call vault, a reference onwards."""
        digits = event.digits or ""
        ref = sealed_ref(event.call_sid, update_id)
        await seal(self.redis, event.call_sid, ref, digits)
        return event.model_copy(
            update={"digits": None, "sealed": SealedDigits(ref=ref, masked=mask_value(digits))}
        )

    async def _call_state(self, sid: str, update_id: str) -> list[Any]:
        """One round trip: the undelivered update, the cached reply, (while a reply has
        pieces left, the carrier being back from a prompts-only piece) the next piece, and the
        call's cursor (where the API may walk the next turn from).

        EVALSHA directly: a pipeline holding a Script object asks SCRIPT EXISTS first on
        every execute, a second round trip on every webhook. A Redis that lost its scripts
        (restarted) answers NOSCRIPT once; the script is loaded and the read repeated."""
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._fallback_key(sid))
                pipe.get(self._reply_key(sid))
                pipe.evalsha(self._next_piece.sha, 2, self._pieces_key(sid),
                             self._reply_key(sid), update_id, REPLY_TTL_S)
                pipe.get(self._cursor_key(sid))
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self.redis.script_load(_NEXT_PIECE)
        raise AssertionError("unreachable")

    async def _answer_hold_poll(self, sid: str, cached: str) -> Reply | None:
        """A queued caller back from a hold segment: the next segment comes from Redis (live
        position, announcements when due), no workflow update, unless routing says the
        workflow must act (agent assigned, max wait, callback offer due, caller gone).

        Any return counts, whatever parameters it repeats: a hold collects nothing."""
        if '"hold"' not in cached:  # cheap test before parsing the cached reply
            return None
        pending = Reply.model_validate_json(cached)
        if pending.terminal is None or pending.terminal.kind != "hold":
            return None
        hold = await self.hold_poller.answer(sid)
        if hold is None:
            return None
        reply = Reply(
            instructions=[hold], expected_duration_s=hold.duration_s, turn=pending.turn
        )
        await self.redis.set(self._reply_key(sid), reply.model_dump_json(), ex=REPLY_TTL_S)
        return reply

    async def pending(self, call_sid: str) -> Reply | None:
        # One round trip: applet fetches are a third of a busy line's webhook traffic.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._fallback_key(call_sid))
            pipe.get(self._reply_key(call_sid))
            held, cached = await pipe.execute()
        if held:
            return self._hold_reply()
        if cached:
            return Reply.model_validate_json(cached)
        handle = self.client.get_workflow_handle(call_workflow_id(call_sid))
        try:
            return await handle.query("pending", result_type=Reply | None)  # type: ignore[arg-type]
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise UnknownCall(call_sid) from err
            raise

    async def end(self, event: CallEvent) -> None:
        # A status callback may repeat the last keys pressed: the end of a call needs none.
        event = event.model_copy(update={"digits": None})
        handle = self.client.get_workflow_handle(call_workflow_id(event.call_sid))
        try:
            await handle.signal(END_SIGNAL, event)
        except RPCError as err:
            # Unknown or already finished: a status callback for a call we no longer run.
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info("status_for_finished_call", call_sid=event.call_sid)
        await self.redis.delete(
            self._fallback_key(event.call_sid),
            vault_key(event.call_sid),
            self._cursor_key(event.call_sid),
        )

    # --- internals -----------------------------------------------------------------------

    async def _send(
        self,
        event: CallEvent,
        *,
        update_id: str,
        dialect: Dialect,
        start: bool,
        cursor: str | None = None,
    ) -> tuple[Reply, CallCursor | None]:
        """The turn's reply, and the call's cursor after it: from the API's own walk, or
        handed back by the workflow with its answer (None: the next turn is the workflow's,
        and whatever cursor the call had is stale from now on)."""
        workflow_id = call_workflow_id(event.call_sid)
        try:
            if not start:
                if cursor is not None and self.walk_turns:
                    moved = await self._walk_later(cursor, event, update_id)
                    if moved is not None:
                        return moved.last.reply, moved
                handle = self.client.get_workflow_handle(workflow_id)
                answered = await handle.execute_update(
                    ADVANCE_UPDATE, event, id=update_id, result_type=TurnReply
                )
                return self._answered(answered)
            at = datetime.now(UTC)
            start_input, operation = await self._start_operation(event, dialect, workflow_id)
            opened = None
            if self.schedules is not None:
                opened = await self._start_opened(start_input, event, update_id, at)
            if opened is None:
                answered = await self.client.execute_update_with_start_workflow(
                    ADVANCE_UPDATE,
                    event,
                    start_workflow_operation=operation,
                    id=update_id,
                    result_type=TurnReply,
                )
                opened = self._answered(answered)
            if self.record_start is not None:
                # After the reply, never before it: the caller does not wait for the row.
                self._spawn(self.record_start(start_input, at))
            return opened
        except WorkflowUpdateFailedError as err:
            cause = getattr(err.cause, "type", None)
            if cause == "CallOver":
                raise CallOver(event.call_sid) from err
            raise
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise UnknownCall(event.call_sid) from err
            if (
                err.status == RPCStatusCode.ALREADY_EXISTS
                or "already completed" in str(err).lower()
            ):
                raise CallOver(event.call_sid) from err
            raise

    async def _walk_later(
        self, raw_cursor: str, event: CallEvent, update_id: str
    ) -> CallCursor | None:
        """Walk a later turn from the call's cursor (api.opening.walk_later) and hand it to
        the workflow by the `walked` signal before the caller hears it: a signal returns
        once the server has it in the call's history, without waiting for any worker. None:
        the workflow must walk this turn (an activity, an end action, keys to seal, a call
        near its silence deadline or its turn ceiling, a flow not at hand)."""
        assert self.schedules is not None
        try:
            cursor = CallCursor.model_validate_json(raw_cursor)
        except ValueError:
            log.warning("cursor_unreadable", call_sid=event.call_sid)
            return None
        at = datetime.now(UTC)
        last = cursor.last
        if (
            event.kind == EventKind.ended
            or event.sealed is not None
            or last.update_id == update_id
            or last.hangup_reason is not None
            or last.reply.turn + 1 > MAX_TURNS_PER_CALL
            or at + WALK_MARGIN >= cursor.silent_after
        ):
            return None
        flow = await self._flow(cursor)
        if flow is None:
            return None
        walked = await walk_later(flow, cursor, event, update_id, self.schedules, at=at)
        if walked is None:
            return None
        handle = self.client.get_workflow_handle(call_workflow_id(event.call_sid))
        await handle.signal(WALKED_SIGNAL, walked)
        API_WALKED_TURNS.labels(turn="later").inc()
        return self._moved(cursor, walked, at)

    def _answered(self, answered: TurnReply) -> tuple[Reply, CallCursor | None]:
        """A workflow update's answer: the reply for the carrier, and the cursor the workflow
        handed back when the API may walk the call's next turn (workers older than this field
        send none, and then every later turn of the call stays an update)."""
        return answered.plain(), answered.cursor if self.walk_turns else None

    def _moved(self, cursor: CallCursor, walked: WalkedTurn, at: datetime) -> CallCursor:
        """The cursor after `walked`, answered at `at`: the workflow ends the call as silent
        no sooner than the reply's expected duration plus the grace period after it."""
        silence = silent_after_s(walked.reply, self.settings.call_grace_s)
        return cursor.model_copy(
            update={"last": walked, "silent_after": at + timedelta(seconds=silence)}
        )

    async def _flow(self, cursor: CallCursor) -> FlowDefinition | None:
        """The call's pinned flow version: parsed already in this process, else loaded."""
        flow = frozen(cursor.definition_checksum)
        if flow is not None:
            return flow
        if self.load_version is None or cursor.flow_id is None or cursor.flow_version is None:
            return None
        loaded = await self.load_version(cursor.flow_id, cursor.flow_version)
        if loaded is None or loaded[1] != cursor.definition_checksum:
            return None
        return parse_frozen(*loaded)

    async def _start_opened(
        self, start: CallStart, event: CallEvent, update_id: str, at: datetime
    ) -> tuple[Reply, CallCursor | None] | None:
        """Answer the first turn from the API's own walk of it (api.opening) and start the
        workflow from there: a plain start, which needs no worker to return. None: the flow
        needs the workflow for its first turn (the caller then waits for update-with-start).
        With the reply comes the call's first cursor (None when the API walks no later turns,
        or without a flow checksum to find the flow again by).

        A start that finds the workflow there already (a carrier retry whose first attempt
        started it, a call begun by update-with-start) asks it instead, under the same update
        id: the workflow answers its own opening again, or the update it already ran."""
        assert self.schedules is not None
        opening = await walk_opening(start, event, update_id, self.schedules, at=at)
        if opening is None:
            return None
        workflow_id = call_workflow_id(event.call_sid)
        try:
            await self.client.start_workflow(
                CALL_WORKFLOW,
                start.model_copy(update={"opening": opening}),
                id=workflow_id,
                task_queue=self.settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                execution_timeout=CALL_TIMEOUT,
                search_attributes=self._search_attributes(
                    start, event, SearchAttributePair(CURRENT_NODE, opening.node_id)
                ),
            )
        except WorkflowAlreadyStartedError:
            handle = self.client.get_workflow_handle(workflow_id)
            answered = await handle.execute_update(
                ADVANCE_UPDATE, event, id=update_id, result_type=TurnReply
            )
            return self._answered(answered)
        API_WALKED_TURNS.labels(turn="first").inc()
        if not self.walk_turns or start.definition_checksum is None:
            return opening.reply, None
        cursor = CallCursor(
            flow_id=start.flow_id,
            flow_version=start.flow_version,
            definition_checksum=start.definition_checksum,
            dialect=start.dialect,
            last=opening,
            silent_after=at,
        )
        return opening.reply, self._moved(cursor, opening, at)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)  # a reference until done, or the loop may drop it
        task.add_done_callback(self._background.discard)

    async def _start_operation(
        self, event: CallEvent, dialect: Dialect, workflow_id: str
    ) -> tuple[CallStart, WithStartWorkflowOperation[Any, Any]]:
        resolved = await self.resolve_flow(event.called, event.custom_field)
        if resolved is None:
            raise FlowNotFound(event.called or "")
        flow_id, version, flow_name, definition = resolved[:4]
        checksum = resolved[4] if len(resolved) > 4 else None
        start = CallStart(
            call_sid=event.call_sid,
            dialect=dialect,
            carrier=event.carrier,
            direction=event.direction,
            caller=event.caller,
            called=event.called,
            custom_field=event.custom_field,
            flow_id=flow_id,
            flow_version=version,
            flow_name=flow_name,
            definition=definition,
            definition_checksum=checksum,
            grace_s=self.settings.call_grace_s,
            start_recorded=self.record_start is not None,
        )
        return start, WithStartWorkflowOperation(
            CALL_WORKFLOW,
            start,
            id=workflow_id,
            task_queue=self.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            execution_timeout=CALL_TIMEOUT,
            search_attributes=self._search_attributes(start, event),
        )

    @staticmethod
    def _search_attributes(
        start: CallStart, event: CallEvent, *more: SearchAttributePair[Any]
    ) -> TypedSearchAttributes:
        return TypedSearchAttributes(
            [
                SearchAttributePair(FLOW_ID, start.flow_id),
                SearchAttributePair(FLOW_VERSION, start.flow_version),
                SearchAttributePair(CALLER_HASH, _caller_hash(event.caller)),
                SearchAttributePair(CALL_STATUS, "in_progress"),
                *more,
            ]
        )

    async def _fallback(self, event: CallEvent, update_id: str, start: bool) -> Reply:
        FALLBACK_REPLIES.inc()
        log.warning(
            "webhook_budget_exceeded",
            call_sid=event.call_sid,
            update_id=update_id,
            budget_ms=self.settings.webhook_budget_ms,
        )
        key = self._fallback_key(event.call_sid)
        await self.redis.hset(
            key,
            mapping={
                "event": event.model_dump_json(),
                "update_id": update_id,
                "start": "1" if start else "0",
                "at": str(time.time()),
            },
        )
        await self.redis.expire(key, REPLY_TTL_S)
        return self._hold_reply()

    async def _not_in_service(self, event: CallEvent, dialect: Dialect) -> Reply:
        """No published flow answers this number: say so, then hang up (no workflow runs)."""
        log.warning("no_flow_for_number", call_sid=event.call_sid, called=event.called)
        key = f"call:{event.call_sid}:no_flow"
        spoken = not await self.redis.set(key, "1", ex=REPLY_TTL_S, nx=True)
        say = Say(text=NOT_IN_SERVICE)
        if dialect == Dialect.exotel and not spoken:
            # Exotel speaks and hangs up in two applets: the greeting now, hang-up next turn.
            reply = Reply(instructions=[say], expected_duration_s=expected_duration_s([say]))
        else:
            reply = Reply(
                instructions=[say, Hangup(reason="no_flow")] if not spoken else [Hangup()],
                final=True,
            )
        await self.redis.set(
            self._reply_key(event.call_sid), reply.model_dump_json(), ex=REPLY_TTL_S
        )
        return reply

    @staticmethod
    def _hold_reply() -> Reply:
        instructions = [Say(text=HOLD_TEXT), Pause(seconds=2)]
        return Reply(
            instructions=instructions,
            expected_duration_s=expected_duration_s(instructions),
            fallback=True,
        )


__all__ = ["FlowNotFound", "TemporalCallGateway", "TemporalUnavailable"]
