"""The audit log: who changed what, written in the same transaction as the change itself.

Summaries are scrubbed of secrets (passwords, hashes, tokens, keys) before they are stored,
whatever the caller passes, so a careless summary cannot leak one into the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditLog

REDACTED = "[redacted]"
_SECRET_EXACT = frozenset({"password", "secret", "token", "api_key", "apikey", "authorization"})
_SECRET_SUFFIXES = ("password", "_hash", "_secret", "_token", "_api_key")


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SECRET_EXACT or lowered.endswith(_SECRET_SUFFIXES)


def scrub(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-safe copy of `data` with secret-looking keys dropped, at any depth."""
    if data is None:
        return None
    return _scrub_value(dict(data))  # type: ignore[no-any-return]


def _scrub_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _scrub_value(v) for k, v in value.items() if not _is_secret(str(k))}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v) for v in value]
    return to_jsonable_python(value, fallback=str)


def changes(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose values differ, as (before, after) halves."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    keys += [k for k in before if k not in after]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


@dataclass(frozen=True)
class Actor:
    """Who did it and from where; user fields are None for the system or an anonymous caller."""

    user_id: int | None = None
    username: str | None = None
    ip: str | None = None
    request_id: str | None = None


SYSTEM = Actor(username="system")


async def record(
    session: AsyncSession,
    actor: Actor,
    *,
    action: str,
    entity_type: str,
    entity_id: str | int | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Add one audit row to the session's transaction (flushed, not committed)."""
    row = AuditLog(
        actor_user_id=actor.user_id,
        actor_username=actor.username[:64] if actor.username else None,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id)[:128],
        before=scrub(before),
        after=scrub(after),
        ip=actor.ip,
        request_id=actor.request_id,
    )
    session.add(row)
    await session.flush()
    return row


async def list_logs(
    session: AsyncSession,
    *,
    offset: int,
    limit: int,
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor_user_id: int | None = None,
    actor_username: str | None = None,
    action: str | None = None,
) -> tuple[Sequence[AuditLog], int]:
    """Newest first."""
    stmt = select(AuditLog)
    if entity_type is not None:
        stmt = stmt.where(AuditLog.entity_type == entity_type)
    if entity_id is not None:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if actor_user_id is not None:
        stmt = stmt.where(AuditLog.actor_user_id == actor_user_id)
    if actor_username is not None:
        stmt = stmt.where(func.lower(AuditLog.actor_username) == actor_username.lower())
    if action is not None:
        stmt = stmt.where(AuditLog.action == action)
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = (
        (
            await session.execute(
                stmt.order_by(AuditLog.occurred_at.desc(), AuditLog.id.desc())
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total
