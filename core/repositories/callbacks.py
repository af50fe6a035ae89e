"""SQL for callbacks: voice_callbacks (requests, attempts, raw carrier events) and
sms_callbacks (SMS sent and delivery reports).

Every function works inside the caller's transaction and never commits. Writes from activities
are idempotent (activities retry): an attempt is upserted by its number, a carrier event is
appended only once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.callbacks import TERMINAL_STATUSES, CallbackRecord
from core.db.models import Agent, Flow, Queue, SmsCallback, VoiceCallback
from core.errors import Conflict, NotFound
from core.temporal import callback_workflow_id

# A callback's raw carrier events are kept, but not without bound (Exotel retries callbacks).
MAX_CARRIER_EVENTS = 100
# Workflow events that set when the next attempt is due.
_MOVES_DUE_TIME = frozenset({"scheduled", "rescheduled", "retry", "moved_to_opening"})


@dataclass(frozen=True)
class NewCallback:
    phone_number: str
    scheduled_at: datetime | None
    asap: bool
    queue_id: int | None
    flow_id: int | None
    agent_id: int | None
    note: str | None
    max_attempts: int
    retry_delay_s: int
    queue_position: int | None = None
    source_call_sid: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    created_by: int | None = None


def request_hash(body: dict[str, Any]) -> str:
    """A stable digest of a request body, to tell a retried request from a reused key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def create(session: AsyncSession, new: NewCallback) -> tuple[VoiceCallback, bool]:
    """Insert a callback; with an idempotency key, the one already created under it (same
    body) is returned instead, and a different body under the same key is a Conflict."""
    values = {
        "phone_number": new.phone_number,
        "scheduled_at": new.scheduled_at,
        "asap": new.asap,
        "queue_id": new.queue_id,
        "flow_id": new.flow_id,
        "agent_id": new.agent_id,
        "note": new.note,
        "max_attempts": new.max_attempts,
        "retry_delay_s": new.retry_delay_s,
        "queue_position": new.queue_position,
        "source_call_sid": new.source_call_sid,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "created_by": new.created_by,
        "status": "waiting_in_queue" if new.queue_id is not None else "scheduled",
    }
    stmt = insert(VoiceCallback).values(**values)
    if new.idempotency_key is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[VoiceCallback.idempotency_key],
            index_where=VoiceCallback.idempotency_key.is_not(None),
        )
    new_id = (await session.execute(stmt.returning(VoiceCallback.id))).scalar_one_or_none()
    if new_id is None:
        existing = await session.scalar(
            select(VoiceCallback).where(VoiceCallback.idempotency_key == new.idempotency_key)
        )
        assert existing is not None  # the conflict that stopped the insert is this row
        if existing.request_hash != new.request_hash:
            raise Conflict(
                "Idempotency-Key was already used for a different request; "
                "use a new key for a new callback"
            )
        return existing, False
    row = await get(session, new_id, for_update=True)
    row.workflow_id = callback_workflow_id(new_id)
    await session.flush()
    return row, True


async def get(
    session: AsyncSession, callback_id: int, *, for_update: bool = False
) -> VoiceCallback:
    stmt = select(VoiceCallback).where(VoiceCallback.id == callback_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"callback {callback_id} does not exist")
    return row


async def find(session: AsyncSession, callback_id: int) -> VoiceCallback | None:
    return await session.get(VoiceCallback, callback_id)


async def list_callbacks(
    session: AsyncSession,
    *,
    limit: int,
    before_id: int | None = None,
    statuses: Sequence[str] = (),
    queue_id: int | None = None,
    scheduled_from: datetime | None = None,
    scheduled_to: datetime | None = None,
) -> list[VoiceCallback]:
    """Newest first by id (keyset: `before_id` is the last id of the previous page)."""
    stmt = select(VoiceCallback)
    if before_id is not None:
        stmt = stmt.where(VoiceCallback.id < before_id)
    if statuses:
        stmt = stmt.where(VoiceCallback.status.in_(list(statuses)))
    if queue_id is not None:
        stmt = stmt.where(VoiceCallback.queue_id == queue_id)
    # The date range applies to when the callback is (or was) due; ASAP ones by creation.
    due = func.coalesce(VoiceCallback.scheduled_at, VoiceCallback.created_at)
    if scheduled_from is not None:
        stmt = stmt.where(due >= scheduled_from)
    if scheduled_to is not None:
        stmt = stmt.where(due < scheduled_to)
    stmt = stmt.order_by(VoiceCallback.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


def _merge_attempt(attempts: list[Any], attempt: dict[str, Any]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    found = False
    for item in attempts:
        if isinstance(item, dict) and item.get("number") == attempt["number"]:
            # Fields written by the dial (sid, marks) survive a later write that lacks them.
            merged.append({**item, **{k: v for k, v in attempt.items() if v is not None}})
            found = True
        else:
            merged.append(item)
    if not found:
        merged.append(attempt)
    return sorted(merged, key=lambda a: a.get("number", 0) if isinstance(a, dict) else 0)


async def apply_record(session: AsyncSession, rec: CallbackRecord) -> VoiceCallback:
    """The workflow's view of the callback, written (idempotent: the same record twice is one)."""
    row = await get(session, rec.callback_id, for_update=True)
    if row.status in TERMINAL_STATUSES and rec.status not in TERMINAL_STATUSES:
        return row  # a late write never revives a finished callback
    row.status = rec.status
    if rec.attempt is not None:
        attempt = rec.attempt.model_dump(mode="json", by_alias=True)
        row.attempts = _merge_attempt(list(row.attempts or []), attempt)
    if rec.next_attempt_at is not None and rec.event in _MOVES_DUE_TIME:
        row.scheduled_at = rec.next_attempt_at
        row.asap = False if rec.event == "rescheduled" else row.asap
    if rec.event == "rescheduled" and rec.next_attempt_at is None:
        row.asap = True
    if rec.max_attempts is not None:
        row.max_attempts = rec.max_attempts
    if rec.agent_id is not None and await session.get(Agent, rec.agent_id) is not None:
        row.agent_id = rec.agent_id  # (an agent deleted meanwhile must not fail the write)
    if rec.last_error is not None:
        row.last_error = rec.last_error[:1000]
    if rec.finished and row.completed_at is None:
        row.completed_at = datetime.now(UTC)
    await session.flush()
    return row


async def attempt_of(session: AsyncSession, callback_id: int, number: int) -> dict[str, Any]:
    row = await get(session, callback_id)
    for item in row.attempts or []:
        if isinstance(item, dict) and item.get("number") == number:
            return dict(item)
    return {}


async def mark_attempt(
    session: AsyncSession, callback_id: int, number: int, **fields: Any
) -> dict[str, Any]:
    """Merge `fields` into attempt `number` (created if absent); None values remove a key."""
    row = await get(session, callback_id, for_update=True)
    attempts = [dict(a) for a in row.attempts or [] if isinstance(a, dict)]
    target = next((a for a in attempts if a.get("number") == number), None)
    if target is None:
        target = {"number": number}
        attempts.append(target)
    for key, value in fields.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    row.attempts = sorted(attempts, key=lambda a: a.get("number", 0))
    await session.flush()
    return dict(target)


async def append_carrier_event(
    session: AsyncSession, callback_id: int, event: dict[str, Any]
) -> bool:
    """Keep one raw status callback on the callback; False if it was already stored (a carrier
    retry) or the callback does not exist."""
    row = await session.scalar(
        select(VoiceCallback).where(VoiceCallback.id == callback_id).with_for_update()
    )
    if row is None:
        return False
    events = list(row.carrier_events or [])
    payload = event.get("payload")
    if any(isinstance(e, dict) and e.get("payload") == payload for e in events):
        return False
    row.carrier_events = [*events, event][-MAX_CARRIER_EVENTS:]
    await session.flush()
    return True


async def sid_from_events(session: AsyncSession, callback_id: int, custom_field: str) -> str | None:
    """The CallSid a status callback reported for this attempt's CustomField, if any came."""
    row = await find(session, callback_id)
    if row is None:
        return None
    for event in reversed(row.carrier_events or []):
        if isinstance(event, dict) and event.get("customField") == custom_field:
            sid = event.get("callSid")
            if sid:
                return str(sid)
    return None


# --- references ----------------------------------------------------------------------------


async def agent_phone(session: AsyncSession, agent_id: int) -> str | None:
    """An active agent's phone number; None if the agent is gone or disabled."""
    agent = await session.get(Agent, agent_id)
    if agent is None or agent.deleted_at is not None or not agent.is_active:
        return None
    return agent.phone_number


async def check_references(
    session: AsyncSession, *, flow_id: int | None, agent_id: int | None, queue_id: int | None
) -> str | None:
    """The name of the field whose id names nothing usable, or None if all are fine."""
    if flow_id is not None:
        flow = await session.get(Flow, flow_id)
        if flow is None or flow.deleted_at is not None:
            return "flowId"
        if flow.live_version is None:
            return "flowId (the flow has no published version)"
    if agent_id is not None and await agent_phone(session, agent_id) is None:
        return "agentId"
    if queue_id is not None:
        queue = await session.get(Queue, queue_id)
        if queue is None or queue.deleted_at is not None:
            return "queueId"
    return None


# --- SMS -----------------------------------------------------------------------------------


async def record_sms(
    session: AsyncSession,
    *,
    sms_sid: str | None,
    to_number: str | None,
    from_number: str | None,
    status: str | None,
    detailed_status: str | None,
    payload: dict[str, Any],
    callback_id: int | None,
) -> SmsCallback:
    if callback_id is not None and await find(session, callback_id) is None:
        callback_id = None  # a report for a callback since purged is still kept
    row = SmsCallback(
        sms_sid=sms_sid,
        to_number=to_number,
        from_number=from_number,
        status=status[:32] if status else None,
        detailed_status=detailed_status[:64] if detailed_status else None,
        payload=payload,
        callback_id=callback_id,
    )
    session.add(row)
    await session.flush()
    return row


async def sms_callback_for(session: AsyncSession, sms_sid: str) -> int | None:
    """The callback an SMS was sent for (from the row written when it was sent)."""
    return await session.scalar(
        select(SmsCallback.callback_id)
        .where(SmsCallback.sms_sid == sms_sid, SmsCallback.callback_id.is_not(None))
        .limit(1)
    )


async def sms_sent_for(session: AsyncSession, custom_field: str) -> SmsCallback | None:
    """The SMS already sent under this CustomField (an activity retry must not send twice)."""
    return await session.scalar(
        select(SmsCallback)
        .where(
            SmsCallback.payload["customField"].astext == custom_field,
            SmsCallback.sms_sid.is_not(None),
            SmsCallback.payload["direction"].astext == "outbound",
        )
        .limit(1)
    )


async def flow_for_custom_field(session: AsyncSession, custom_field: str | None) -> int | None:
    """The flow a callback call must run, from the `CustomField` Exotel echoes on the Passthru
    of a call we placed (`cb:{id}:{attempt}`); None for any other call. For the call gateway:
    an outbound callback call is otherwise matched by the number called (our ExoPhone)."""
    from core.callbacks import parse_custom_field

    parsed = parse_custom_field(custom_field)
    if parsed is None:
        return None
    return await session.scalar(select(VoiceCallback.flow_id).where(VoiceCallback.id == parsed[0]))
