"""Refresh tokens: issued in families (one login), rotated on use, revoked as a family.

A refresh token is good once. Presenting one that was already used means two parties hold it
(the client and a thief); we cannot tell which is which, so the whole family is revoked.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import RefreshToken
from core.security import hash_refresh_token, new_refresh_token


async def issue(
    session: AsyncSession,
    *,
    user_id: int,
    ttl_s: int,
    now: datetime,
    family_id: uuid.UUID | None = None,
    user_agent: str | None = None,
    ip: str | None = None,
) -> tuple[str, RefreshToken]:
    """A new refresh token (raw value for the client, stored row); a new family if none given."""
    raw = new_refresh_token()
    row = RefreshToken(
        id=uuid.uuid4(),
        user_id=user_id,
        family_id=family_id or uuid.uuid4(),
        token_hash=hash_refresh_token(raw),
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        user_agent=(user_agent or None) and user_agent[:256],
        ip=ip,
    )
    session.add(row)
    await session.flush()
    return raw, row


async def find_for_update(session: AsyncSession, raw: str) -> RefreshToken | None:
    """The row for a presented token, locked so two concurrent refreshes cannot both rotate it."""
    stmt = (
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(raw))
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find(session: AsyncSession, raw: str) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(raw))
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark_used(
    session: AsyncSession, token: RefreshToken, *, replaced_by: uuid.UUID, now: datetime
) -> None:
    token.used_at = now
    token.replaced_by = replaced_by
    await session.flush()


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, *, now: datetime) -> int:
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def revoke_all_for_user(session: AsyncSession, user_id: int, *, now: datetime) -> int:
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
