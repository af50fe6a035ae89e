"""Idempotent seed data, run on every start (`ivr dev`, `ivr seed`).

Each step is a function `(session, settings) -> None` in SEED_STEPS, run in order in one
transaction; a step must be safe to run again and must never overwrite what an operator changed
(existing users keep their passwords). Later areas append their steps (flows, agents, queues).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import DEV_ADMIN_PASSWORD, Settings
from core.db.models import User
from core.db.session import make_engine, make_sessionmaker
from core.permissions import Role
from core.repositories import audit as audit_repo
from core.repositories import users as users_repo
from core.security import hash_password_async
from core.seed_business_hours import seed_business_hours
from core.seed_flows import seed_flows
from core.seed_routing import seed_routing

log = structlog.stdlib.get_logger(__name__)

SeedStep = Callable[[AsyncSession, Settings], Awaitable[None]]

# Demo accounts for dev and test only; production gets the admin alone.
DEV_USERS: tuple[tuple[str, str, Role, str], ...] = (
    ("manager", "manager123", Role.manager, "Demo Manager"),
    ("agent", "agent123", Role.agent, "Demo Agent"),
)


class SeedRefused(RuntimeError):
    pass


def seed_users_plan(settings: Settings) -> list[tuple[str, str, Role, str]]:
    """(username, password, role, full name) of every user the seed ensures exists."""
    admin_password = settings.admin_password.get_secret_value()
    if settings.is_production:
        if admin_password == DEV_ADMIN_PASSWORD or len(admin_password) < 12:
            raise SeedRefused("refusing to seed production with a default or short admin password")
        return [("admin", admin_password, Role.super_admin, "Administrator")]
    return [("admin", admin_password, Role.super_admin, "Administrator"), *DEV_USERS]


async def seed_users(session: AsyncSession, settings: Settings) -> None:
    for username, password, role, full_name in seed_users_plan(settings):
        if await users_repo.get_by_username(session, username) is not None:
            continue
        # ON CONFLICT: two processes seeding at once must not fail on the unique index.
        result = await session.execute(
            insert(User)
            .values(
                username=username,
                password_hash=await hash_password_async(password),
                role=role.value,
                full_name=full_name,
            )
            .on_conflict_do_nothing()
            .returning(User.id)
        )
        user_id = result.scalar_one_or_none()
        if user_id is None:
            continue
        await audit_repo.record(
            session,
            audit_repo.SYSTEM,
            action="user.seed",
            entity_type="user",
            entity_id=user_id,
            after={"username": username, "role": role.value},
        )
        log.info("seed_user_created", username=username, role=role.value)


SEED_STEPS: list[SeedStep] = [seed_users, seed_business_hours, seed_routing, seed_flows]


async def run_seed(settings: Settings) -> None:
    """Run every seed step in one transaction; safe to run on every start."""
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            for step in SEED_STEPS:
                await step(session, settings)
            await session.commit()
    finally:
        await engine.dispose()
