"""SQL for carrier_status_events: every status callback a carrier posts, stored raw.

Works inside the caller's transaction and never commits. A carrier retries a status callback
it got no timely 200 for (Exotel: up to twice) with the same payload, so a row is keyed by the
call and a hash of its payload and a retry inserts nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import CarrierStatusEvent, VoiceCallback


def payload_hash(payload: dict[str, Any]) -> str:
    """sha256 of the payload's canonical JSON (sorted keys): equal for a retried callback."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def record_status_event(
    session: AsyncSession,
    *,
    carrier: str,
    call_sid: str,
    status: str | None,
    custom_field: str | None,
    callback_id: int | None,
    payload: dict[str, Any],
) -> bool:
    """Store one status callback; False if this very callback was stored before (a retry)."""
    if callback_id is not None:
        # A CustomField naming no callback of ours links to nothing.
        callback_id = await session.scalar(
            select(VoiceCallback.id).where(VoiceCallback.id == callback_id)
        )
    stmt = (
        insert(CarrierStatusEvent)
        .values(
            carrier=carrier[:16],
            call_sid=call_sid,
            status=status[:32] if status else None,
            custom_field=custom_field[:128] if custom_field else None,
            callback_id=callback_id,
            payload=payload,
            payload_hash=payload_hash(payload),
        )
        .on_conflict_do_nothing(index_elements=["call_sid", "payload_hash"])
        .returning(CarrierStatusEvent.id)
    )
    return (await session.scalar(stmt)) is not None


async def status_events(session: AsyncSession, call_sid: str) -> Sequence[CarrierStatusEvent]:
    """A call's status callbacks, oldest first."""
    rows = await session.scalars(
        select(CarrierStatusEvent)
        .where(CarrierStatusEvent.call_sid == call_sid)
        .order_by(CarrierStatusEvent.received_at, CarrierStatusEvent.id)
    )
    return rows.all()
