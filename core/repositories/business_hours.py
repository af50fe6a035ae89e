"""Business-hours schedules: the SQL behind the REST routes, the seed and the call activity."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.business_hours import (
    Schedule,
    ScheduleBundle,
    ScheduleRequest,
    schedule_from_row,
    snapshot,
)
from core.db.models import BusinessHours, Flow, FlowNode, FlowVersion
from core.errors import Conflict, NotFound
from core.repositories.users import flush_or_conflict

log = structlog.get_logger(__name__)


def _columns(schedule: Schedule) -> dict[str, Any]:
    data = schedule.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "name": schedule.name,
        "timezone": schedule.timezone,
        "weekly": data["weekly"],
        "holiday_country": schedule.holiday_country,
        "holiday_subdivision": schedule.holiday_subdivision,
        "custom_holidays": data["customHolidays"],
        "overrides": data["overrides"],
        "messages": data["messages"],
    }


async def list_schedules(
    session: AsyncSession, *, offset: int, limit: int
) -> tuple[Sequence[BusinessHours], int]:
    total = (await session.execute(select(func.count(BusinessHours.id)))).scalar_one()
    rows = (
        await session.execute(
            select(BusinessHours).order_by(BusinessHours.name, BusinessHours.id)
            .offset(offset).limit(limit)
        )
    ).scalars().all()
    return rows, total


async def get(session: AsyncSession, schedule_id: int) -> BusinessHours:
    row = await session.get(BusinessHours, schedule_id)
    if row is None:
        raise NotFound(f"business hours {schedule_id} not found")
    return row


async def get_many(session: AsyncSession, ids: Sequence[int]) -> list[BusinessHours]:
    if not ids:
        return []
    rows = await session.execute(select(BusinessHours).where(BusinessHours.id.in_(list(ids))))
    return list(rows.scalars().all())


async def bundle(
    session: AsyncSession, req: ScheduleRequest, *, clock: datetime | None = None
) -> ScheduleBundle:
    """The schedules `req.ids` with their public holidays resolved around `req.at`, for a
    call to check at its own clock (`clock`: the test clock, when one is configured). What
    the `load_business_hours` activity answers, and what the API uses for a first turn it
    walks itself (api/opening.py)."""
    rows = await get_many(session, sorted(set(req.ids)))
    found = {row.id: row for row in rows}
    snapshots = []
    for schedule_id in sorted(found):
        try:
            schedule = schedule_from_row(found[schedule_id])
        except ValueError as exc:  # a row edited outside the API into something invalid
            log.warning("business_hours_unreadable", id=schedule_id, error=str(exc)[:200])
            continue
        snapshots.append(snapshot(schedule_id, schedule, req.at))
    have = {s.id for s in snapshots}
    return ScheduleBundle(
        snapshots=snapshots, missing=[i for i in req.ids if i not in have], clock=clock
    )


async def id_by_name(session: AsyncSession, name: str) -> int | None:
    row = await session.execute(select(BusinessHours.id).where(BusinessHours.name == name))
    return row.scalar_one_or_none()


async def _name_taken(session: AsyncSession, name: str, exclude_id: int | None) -> bool:
    stmt = select(BusinessHours.id).where(func.lower(BusinessHours.name) == name.lower())
    if exclude_id is not None:
        stmt = stmt.where(BusinessHours.id != exclude_id)
    return (await session.execute(stmt.limit(1))).first() is not None


async def create(session: AsyncSession, schedule: Schedule) -> BusinessHours:
    if await _name_taken(session, schedule.name, None):
        raise Conflict(f"business hours named {schedule.name!r} already exist")
    row = BusinessHours(**_columns(schedule))
    session.add(row)
    await flush_or_conflict(session, f"business hours named {schedule.name!r} already exist")
    await session.refresh(row)
    return row


async def replace(session: AsyncSession, row: BusinessHours, schedule: Schedule) -> BusinessHours:
    if await _name_taken(session, schedule.name, row.id):
        raise Conflict(f"business hours named {schedule.name!r} already exist")
    for key, value in _columns(schedule).items():
        setattr(row, key, value)
    await flush_or_conflict(session, f"business hours named {schedule.name!r} already exist")
    await session.refresh(row)
    return row


async def referencing_flows(session: AsyncSession, schedule_id: int) -> list[str]:
    """Names of live flows whose draft or live version names this schedule."""
    path = text("'$.** ? (@.businessHoursId == $id)'::jsonpath")
    variables = func.jsonb_build_object("id", schedule_id)
    in_live = (
        select(Flow.name)
        .join(FlowVersion, (FlowVersion.flow_id == Flow.id)
              & (FlowVersion.version == Flow.live_version))
        .where(Flow.deleted_at.is_(None),
               func.jsonb_path_exists(FlowVersion.definition, path, variables))
    )
    in_draft = (
        select(Flow.name)
        .join(FlowNode, FlowNode.flow_id == Flow.id)
        .where(Flow.deleted_at.is_(None),
               func.jsonb_path_exists(FlowNode.config, path, variables))
    )
    names = (await session.execute(in_live.union(in_draft))).scalars().all()
    return sorted(set(names))


async def delete(session: AsyncSession, row: BusinessHours) -> None:
    flows = await referencing_flows(session, row.id)
    if flows:
        raise Conflict(
            f"business hours {row.id} are used by flows: {', '.join(flows)}; "
            "point them at another schedule first"
        )
    await session.delete(row)
    await session.flush()


def summary(row: BusinessHours) -> dict[str, Any]:
    return {
        "name": row.name,
        "timezone": row.timezone,
        "weekly": row.weekly,
        "holiday_country": row.holiday_country,
        "holiday_subdivision": row.holiday_subdivision,
        "custom_holidays": row.custom_holidays,
        "overrides": row.overrides,
        "messages": row.messages,
    }
