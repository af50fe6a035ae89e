"""Users: lookups are case-insensitive on username, as the unique index is."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import User
from core.errors import Conflict

# What the audit log and other summaries may show of a user (never the password hash).
SUMMARY_FIELDS = ("id", "username", "email", "full_name", "role", "is_active")


def summary(user: User) -> dict[str, Any]:
    return {name: getattr(user, name) for name in SUMMARY_FIELDS}


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_by_username(session: AsyncSession, username: str) -> User | None:
    stmt = select(User).where(func.lower(User.username) == username.lower())
    return (await session.execute(stmt)).scalar_one_or_none()


async def username_taken(
    session: AsyncSession, username: str, *, exclude_id: int | None = None
) -> bool:
    stmt = select(User.id).where(func.lower(User.username) == username.lower())
    if exclude_id is not None:
        stmt = stmt.where(User.id != exclude_id)
    return (await session.execute(stmt.limit(1))).first() is not None


async def list_users(
    session: AsyncSession,
    *,
    offset: int,
    limit: int,
    role: str | None = None,
    is_active: bool | None = None,
    search: str | None = None,
) -> tuple[Sequence[User], int]:
    stmt = select(User)
    if role is not None:
        stmt = stmt.where(User.role == role)
    if is_active is not None:
        stmt = stmt.where(User.is_active.is_(is_active))
    if search:
        pattern = (
            "%" + search.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
        )
        stmt = stmt.where(
            func.lower(User.username).like(pattern, escape="\\")
            | func.lower(func.coalesce(User.full_name, "")).like(pattern, escape="\\")
            | func.lower(func.coalesce(User.email, "")).like(pattern, escape="\\")
        )
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = (
        (await session.execute(stmt.order_by(User.id).offset(offset).limit(limit))).scalars().all()
    )
    return rows, total


async def create(
    session: AsyncSession,
    *,
    username: str,
    password_hash: str,
    role: str,
    email: str | None = None,
    full_name: str | None = None,
    is_active: bool = True,
) -> User:
    """Insert a user; a username taken in any letter case is a Conflict."""
    if await username_taken(session, username):
        raise Conflict(f"username {username!r} is taken")
    user = User(
        username=username,
        password_hash=password_hash,
        role=role,
        email=email,
        full_name=full_name,
        is_active=is_active,
    )
    session.add(user)
    await flush_or_conflict(session, f"username {username!r} is taken")
    await session.refresh(user)
    return user


async def flush_or_conflict(session: AsyncSession, message: str) -> None:
    """Flush; a unique violation (a concurrent insert won the race) becomes a Conflict."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(message) from exc


async def record_login(session: AsyncSession, user: User, when: datetime) -> None:
    user.last_login_at = when
    await session.flush()
