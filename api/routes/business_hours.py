"""Business-hours schedules: CRUD and "are we open at …?".

Reading needs `business_hours:view` (managers and up), changing `business_hours:manage`
(admins and up). Invalid schedules (overlapping or inverted intervals, an unknown time zone or
holiday country) are 422s naming the field; a schedule a flow still uses cannot be deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import field_validator, model_validator

from api.deps import AuditDep, PagingDep, RequirePermission, SessionDep
from core.business_hours import (
    CheckResult,
    Schedule,
    check_holiday_region,
    schedule_from_row,
    snapshot,
)
from core.db.models import BusinessHours
from core.errors import InvalidInput
from core.repositories import audit as audit_repo
from core.repositories import business_hours as repo
from core.schemas import CamelModel, ErrorOut, Page

router = APIRouter(prefix="/api/business-hours", tags=["business hours"])

Viewer = RequirePermission("business_hours:view")
Manager = RequirePermission("business_hours:manage")
ScheduleId = Annotated[int, Path(ge=1, le=2**31 - 1)]

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
_ONE: dict[int | str, dict[str, Any]] = {**_ERRORS, 404: {"model": ErrorOut}}
_WRITE: dict[int | str, dict[str, Any]] = {
    **_ONE, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}
}


class BusinessHoursIn(Schedule):
    """A schedule as the API takes it: the stored shape, with the holiday region checked."""

    @field_validator("holiday_country")
    @classmethod
    def _known_country(cls, country: str | None) -> str | None:
        problem = check_holiday_region(country, None)
        if problem is not None:
            raise ValueError(problem)
        return country

    @model_validator(mode="after")
    def _known_subdivision(self) -> BusinessHoursIn:
        if self.holiday_country is not None and self.holiday_subdivision is not None:
            problem = check_holiday_region(self.holiday_country, self.holiday_subdivision)
            if problem is not None:
                raise ValueError(f"holidaySubdivision: {problem}")
        return self


class BusinessHoursOut(CamelModel):
    id: int
    name: str
    timezone: str
    weekly: dict[str, Any]
    holiday_country: str | None
    holiday_subdivision: str | None
    custom_holidays: list[Any]
    overrides: list[Any]
    messages: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CheckOut(CheckResult):
    schedule_id: int
    at: datetime


def _out(row: BusinessHours) -> BusinessHoursOut:
    return BusinessHoursOut.model_validate(row)


@router.get("", response_model=Page[BusinessHoursOut], responses=_ERRORS)
async def list_business_hours(
    _: Viewer, session: SessionDep, paging: PagingDep
) -> Page[BusinessHoursOut]:
    """List business-hours schedules by name."""
    rows, total = await repo.list_schedules(session, offset=paging.offset, limit=paging.limit)
    return Page[BusinessHoursOut](
        items=[_out(r) for r in rows], total=total, offset=paging.offset, limit=paging.limit
    )


@router.post("", status_code=201, response_model=BusinessHoursOut, responses=_WRITE)
async def create_business_hours(
    body: BusinessHoursIn, _: Manager, session: SessionDep, audit: AuditDep
) -> BusinessHoursOut:
    """Create a schedule (names are unique regardless of letter case)."""
    row = await repo.create(session, body)
    await audit.record("business_hours.create", "business_hours", row.id,
                       after=repo.summary(row))
    out = _out(row)
    await session.commit()
    return out


@router.get("/{schedule_id}", response_model=BusinessHoursOut, responses=_ONE)
async def get_business_hours(
    schedule_id: ScheduleId, _: Viewer, session: SessionDep
) -> BusinessHoursOut:
    """One schedule."""
    return _out(await repo.get(session, schedule_id))


@router.put("/{schedule_id}", response_model=BusinessHoursOut, responses=_WRITE)
async def update_business_hours(
    schedule_id: ScheduleId,
    body: BusinessHoursIn,
    _: Manager,
    session: SessionDep,
    audit: AuditDep,
) -> BusinessHoursOut:
    """Replace a schedule; calls check the new one from their next business-hours check."""
    row = await repo.get(session, schedule_id)
    before = repo.summary(row)
    row = await repo.replace(session, row, body)
    old, new = audit_repo.changes(before, repo.summary(row))
    await audit.record("business_hours.update", "business_hours", row.id, before=old, after=new)
    out = _out(row)
    await session.commit()
    return out


@router.delete("/{schedule_id}", status_code=204, response_class=Response, responses=_WRITE)
async def delete_business_hours(
    schedule_id: ScheduleId, _: Manager, session: SessionDep, audit: AuditDep
) -> Response:
    """Delete a schedule no flow uses (409 names the flows that still do)."""
    row = await repo.get(session, schedule_id)
    before = repo.summary(row)
    await repo.delete(session, row)
    await audit.record("business_hours.delete", "business_hours", schedule_id, before=before)
    await session.commit()
    return Response(status_code=204)


@router.get("/{schedule_id}/check", response_model=CheckOut, responses=_ONE)
async def check_business_hours(
    schedule_id: ScheduleId,
    _: Viewer,
    session: SessionDep,
    at: Annotated[
        str | None,
        Query(max_length=64, description="ISO 8601 instant with a UTC offset, e.g. "
              "2026-01-26T10:00:00+05:30 (an unencoded + arriving as a space is accepted); "
              "default now"),
    ] = None,
) -> CheckOut:
    """Open or closed at `at` (default now), why, what callers hear, and the next opening."""
    instant = _parse_at(at) if at is not None else datetime.now(UTC)
    row = await repo.get(session, schedule_id)
    try:
        schedule = schedule_from_row(row)
    except ValueError as exc:
        raise InvalidInput(f"stored schedule {schedule_id} is not valid: {exc}") from None
    result = snapshot(row.id, schedule, instant).check(instant)
    return CheckOut(**result.model_dump(by_alias=False), schedule_id=row.id, at=instant)


def _parse_at(text: str) -> datetime:
    raw = text.strip()
    if len(raw) > 19 and raw[-6] == " ":  # "…T10:00:00 05:30": a + lost in the query string
        raw = f"{raw[:-6]}+{raw[-5:]}"
    try:
        instant = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"query.at: {text!r} is not an ISO 8601 date and time") from None
    if instant.tzinfo is None:
        raise InvalidInput("query.at: give a UTC offset (e.g. +05:30 or Z)")
    return instant
