"""Seed step: the "Support hours" schedule the production flow's welcome node checks.

Mon-Sat 09:00-18:00 India time, closed on Indian public holidays. Created once: a schedule of
that name is left as the operator made it, and one the operator deleted is not brought back
(the seed's audit row remembers it was created).
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.business_hours import Schedule
from core.config import Settings
from core.db.models import AuditLog
from core.errors import Conflict
from core.repositories import audit as audit_repo
from core.repositories import business_hours as hours_repo

log = structlog.stdlib.get_logger(__name__)

SUPPORT_HOURS_NAME = "Support hours"
SEED_ACTION = "business_hours.seed"


def support_hours() -> Schedule:
    day = [{"start": "09:00", "end": "18:00"}]
    return Schedule.model_validate({
        "name": SUPPORT_HOURS_NAME,
        "timezone": "Asia/Kolkata",
        "weekly": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day,
                   "sun": []},
        "holidayCountry": "IN",
        "messages": {
            "closed": "Our support team is available Monday to Saturday, nine AM to six PM. "
            "We open again {{ next_open }}.",
            "holiday": "Our office is closed today for {{ holiday }}. We open again "
            "{{ next_open }}.",
        },
    })


async def seed_business_hours(session: AsyncSession, settings: Settings) -> None:
    if await hours_repo.id_by_name(session, SUPPORT_HOURS_NAME) is not None:
        return
    seeded_before = await session.execute(
        select(AuditLog.id).where(AuditLog.action == SEED_ACTION).limit(1)
    )
    if seeded_before.first() is not None:
        return  # the operator deleted it: respect that
    try:
        async with session.begin_nested():  # a concurrent seeder may win the unique name
            row = await hours_repo.create(session, support_hours())
            await audit_repo.record(
                session, audit_repo.SYSTEM, action=SEED_ACTION, entity_type="business_hours",
                entity_id=row.id, after={"name": row.name},
            )
    except Conflict:
        return
    log.info("seed_business_hours_created", id=row.id, name=row.name)


async def support_hours_id(session: AsyncSession) -> int | None:
    return await hours_repo.id_by_name(session, SUPPORT_HOURS_NAME)
