"""Business hours: is the line open at an instant, why not, and when does it open next.

A schedule has an IANA time zone, weekly intervals per weekday (several a day; an interval
flagged `overnight` runs past midnight into the next day), public holidays (resolved from the
`holidays` package by country and subdivision), custom holidays and date overrides (closed all
day, or special hours, for a date or a range). What applies on a local date, first match wins:
override → custom holiday → public holiday → the weekday's intervals. A day's overnight
interval belongs to that day: it still runs into the next morning whatever the next day is.

`check` is pure and deterministic: the call workflow runs it on a schedule and holiday list it
loaded through an activity, at `workflow.now()`. `public_holidays` (the only part that reads
the `holidays` package) runs outside workflows: in the activity and the REST check.
Wall times that do not exist (the spring-forward gap) are read with the offset before the
change, and ambiguous ones (the autumn overlap) as their first occurrence.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.flows import templates

DEFAULT_TIMEZONE = "Asia/Kolkata"
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead `nextOpenAt` looks; a schedule closed longer than this says null.
LOOKAHEAD_DAYS = 400
MAX_OVERRIDE_DAYS = 366
MAX_INTERVALS_PER_DAY = 12
MAX_CUSTOM_HOLIDAYS = 200
MAX_OVERRIDES = 200

DEFAULT_MESSAGES = {
    "closed": "We are closed right now. Please call again during business hours.",
    "holiday": "We are closed today for {{ holiday }}. Please call again on the next "
    "working day.",
    "override": "We are closed today. Please call again later.",
}

Reason = Literal["open", "override", "closed", "holiday"]
_HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
HHMM = Annotated[str, StringConstraints(pattern=_HHMM)]
Message = Annotated[str, StringConstraints(max_length=500)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        serialize_by_alias=True,
    )


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Interval(_Model):
    """`start` to `end`, local time; `end` may be 24:00. An overnight interval ends next day."""

    start: HHMM
    end: HHMM
    overnight: bool = False

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not self.overnight:
            data.pop("overnight", None)
        return data

    @model_validator(mode="after")
    def _check(self) -> Interval:
        start, end = _minutes(self.start), _minutes(self.end)
        if start == 24 * 60:
            raise ValueError("start cannot be 24:00")
        if self.overnight:
            if end >= start:
                raise ValueError(
                    f"overnight interval {self.start}-{self.end} must end earlier in the day "
                    "than it starts (it ends on the next day)"
                )
        elif end <= start:
            raise ValueError(
                f"interval {self.start}-{self.end} is inverted or empty "
                '(set "overnight": true for a span past midnight)'
            )
        return self

    def span(self) -> tuple[int, int]:
        """(start, end) in minutes from the day's midnight; end > 1440 past midnight."""
        start, end = _minutes(self.start), _minutes(self.end)
        return start, end + 24 * 60 if self.overnight else end


def _check_day(intervals: list[Interval], label: str) -> None:
    spans = sorted(i.span() for i in intervals)
    for (s1, e1), (s2, e2) in itertools.pairwise(spans):
        if s2 < e1:
            raise ValueError(f"{label}: intervals {_fmt(s1, e1)} and {_fmt(s2, e2)} overlap")


def _fmt(start: int, end: int) -> str:
    def hm(m: int) -> str:
        m = m % (24 * 60) if m > 24 * 60 else m
        return f"{m // 60:02d}:{m % 60:02d}"

    return f"{hm(start)}-{hm(end)}"


DayIntervals = Annotated[list[Interval], Field(max_length=MAX_INTERVALS_PER_DAY)]


class Weekly(_Model):
    mon: DayIntervals = Field(default_factory=list)
    tue: DayIntervals = Field(default_factory=list)
    wed: DayIntervals = Field(default_factory=list)
    thu: DayIntervals = Field(default_factory=list)
    fri: DayIntervals = Field(default_factory=list)
    sat: DayIntervals = Field(default_factory=list)
    sun: DayIntervals = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_overlaps(self) -> Weekly:
        for i, day in enumerate(WEEKDAYS):
            _check_day(self.day(i), day)
            # Last night's overnight spill must not run into this day's own intervals.
            prev = WEEKDAYS[i - 1]
            spill = [e - 24 * 60 for s, e in (iv.span() for iv in self.day(i - 1)) if e > 1440]
            for end in spill:
                for s, e in (iv.span() for iv in self.day(i)):
                    if s < end:
                        raise ValueError(
                            f"{day}: interval {_fmt(s, e)} overlaps {prev}'s overnight "
                            f"interval, which runs until {_fmt(0, end).split('-')[1]}"
                        )
        return self

    def day(self, weekday: int) -> list[Interval]:
        """Intervals of a weekday (0 = Monday, as `date.weekday()`)."""
        return getattr(self, WEEKDAYS[weekday % 7])  # type: ignore[no-any-return]


class CustomHoliday(_Model):
    date: dt.date
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    # Every year on the same day and month (e.g. a company's founding day).
    annual: bool = False

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not self.annual:
            data.pop("annual", None)
        return data


class Override(_Model):
    """Closed all day, or open only during `intervals`, on `date` or `from`..`to` inclusive."""

    date: dt.date | None = None
    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None
    closed: bool = False
    intervals: DayIntervals | None = None
    message: Message | None = None

    @model_validator(mode="after")
    def _check(self) -> Override:
        if self.date is not None:
            if self.from_ is not None or self.to is not None:
                raise ValueError('give either "date" or "from"/"to", not both')
        elif self.from_ is None or self.to is None:
            raise ValueError('an override needs "date", or both "from" and "to"')
        elif self.to < self.from_:
            raise ValueError(f'"to" ({self.to}) is before "from" ({self.from_})')
        elif (self.to - self.from_).days + 1 > MAX_OVERRIDE_DAYS:
            raise ValueError(f"an override may span at most {MAX_OVERRIDE_DAYS} days")
        if self.closed == (self.intervals is not None):
            raise ValueError('an override is either "closed": true or has "intervals"')
        if self.intervals is not None:
            if not self.intervals:
                raise ValueError('"intervals" is empty: use "closed": true instead')
            _check_day(self.intervals, "intervals")
        return self

    @property
    def first(self) -> dt.date:
        return self.date or self.from_  # type: ignore[return-value]

    @property
    def last(self) -> dt.date:
        return self.date or self.to  # type: ignore[return-value]

    def covers(self, day: dt.date) -> bool:
        return self.first <= day <= self.last


class Messages(_Model):
    """What to tell callers; templates over `holiday` (the holiday's name), `date` and
    `next_open` ("tomorrow at 9 AM")."""

    closed: Message | None = None
    holiday: Message | None = None
    override: Message | None = None

    @model_validator(mode="after")
    def _templates_parse(self) -> Messages:
        for name in ("closed", "holiday", "override"):
            value = getattr(self, name)
            if value:
                error = templates.check(value)
                if error is not None:
                    raise ValueError(f"messages.{name} does not parse: {error}")
        return self


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Asia/Kolkata)"
        ) from None
    return name


class Schedule(_Model):
    """A business-hours schedule as stored in the `business_hours` table (JSON columns)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = DEFAULT_TIMEZONE
    weekly: Weekly = Field(default_factory=Weekly)
    holiday_country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,3}$")] | None = None
    holiday_subdivision: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,16}$")] | None
    ) = None
    custom_holidays: list[CustomHoliday] = Field(
        default_factory=list, max_length=MAX_CUSTOM_HOLIDAYS
    )
    overrides: list[Override] = Field(default_factory=list, max_length=MAX_OVERRIDES)
    messages: Messages = Field(default_factory=Messages)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return _check_timezone(name)

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if self.holiday_subdivision is not None and self.holiday_country is None:
            raise ValueError("holidaySubdivision needs holidayCountry")
        seen: dict[tuple[int, int, int], str] = {}
        for h in self.custom_holidays:
            key = (0 if h.annual else h.date.year, h.date.month, h.date.day)
            if key in seen:
                raise ValueError(f"customHolidays: {h.date} is listed twice")
            seen[key] = h.name
        ordered = sorted(self.overrides, key=lambda o: o.first)
        for a, b in itertools.pairwise(ordered):
            if b.first <= a.last:
                raise ValueError(
                    f"overrides: {a.first}..{a.last} and {b.first}..{b.last} overlap"
                )
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def check_holiday_region(country: str | None, subdivision: str | None) -> str | None:
    """None if the `holidays` package knows this country (and subdivision), else why not."""
    if country is None:
        return None
    import holidays  # not needed by workflow code, which gets resolved dates

    supported = holidays.list_supported_countries()
    if country not in supported:
        return f"unknown holiday country {country!r} (an ISO 3166 code the holidays package has)"
    if subdivision is not None and subdivision not in supported[country]:
        return f"unknown subdivision {subdivision!r} of {country}"
    return None


@functools.lru_cache(maxsize=256)
def _public_holidays(country: str, subdivision: str | None, years: tuple[int, ...]) -> tuple:
    import holidays

    table = holidays.country_holidays(country, subdiv=subdivision, years=years)
    return tuple(sorted((d, str(name)) for d, name in table.items()))


def public_holidays(
    country: str | None, subdivision: str | None, years: Iterable[int]
) -> dict[date, str]:
    """Public holidays of a country (and subdivision) in `years`, date → name. Not for
    workflow code: the table depends on the installed `holidays` version."""
    if country is None:
        return {}
    return dict(_public_holidays(country, subdivision, tuple(sorted(set(years)))))


def holiday_years(at: datetime) -> range:
    """The years whose holidays a check at `at` may need (nextOpenAt looks ahead)."""
    return range(at.year - 1, at.year + 2)


# --- the check ---------------------------------------------------------------------------


class CheckResult(_Model):
    open: bool
    reason: Reason
    message: str | None = None
    next_open_at: datetime | None = None
    closes_at: datetime | None = None
    holiday: str | None = None
    local_time: str | None = None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class _DayRule:
    kind: Reason  # open (weekly), override, holiday
    intervals: tuple[Interval, ...]
    holiday: str | None = None
    message: str | None = None


def _day_rule(schedule: Schedule, day: date, holidays: Mapping[date, str]) -> _DayRule:
    for o in schedule.overrides:
        if o.covers(day):
            return _DayRule("override", tuple(o.intervals or ()), message=o.message)
    for h in schedule.custom_holidays:
        if h.date == day or (h.annual and (h.date.month, h.date.day) == (day.month, day.day)):
            return _DayRule("holiday", (), holiday=h.name)
    if day in holidays:
        return _DayRule("holiday", (), holiday=holidays[day])
    return _DayRule("open", tuple(schedule.weekly.day(day.weekday())))


def _local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """The instant of local wall time `day` + `minutes` (may run past midnight)."""
    extra, minutes = divmod(minutes, 24 * 60)
    d = day + timedelta(days=extra)
    return datetime.combine(d, time(minutes // 60, minutes % 60), tzinfo=zone)


def _windows(schedule: Schedule, day: date, holidays: Mapping[date, str], zone: ZoneInfo):
    """Open windows (start, end, rule) that begin on local date `day`, in UTC."""
    rule = _day_rule(schedule, day, holidays)
    out = []
    for iv in rule.intervals:
        s, e = iv.span()
        start = _local(day, s, zone).astimezone(UTC)
        end = _local(day, e, zone).astimezone(UTC)
        if end > start:
            out.append((start, end, rule))
    return sorted(out, key=lambda w: w[0])


def check(
    schedule: Schedule, at: datetime, holidays: Mapping[date, str] | None = None
) -> CheckResult:
    """Is the line open at `at` (timezone-aware)? With why, what to say and the next opening.

    `holidays` are the public holidays (date → name) around `at`; custom holidays and
    overrides come from the schedule itself.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    holidays = holidays or {}
    zone = schedule.zone()
    now = at.astimezone(UTC)
    local_now = at.astimezone(zone)
    today = local_now.date()

    # Windows starting yesterday may still run (overnight); merge touching windows so that
    # 22:00-24:00 followed by 00:00-02:00 closes at 02:00.
    current = None
    day = today - timedelta(days=1)
    for _ in range(2):
        for start, end, rule in _windows(schedule, day, holidays, zone):
            if start <= now < end:
                current = (start, end, rule)
        day += timedelta(days=1)
    if current is not None:
        closes = _merged_end(schedule, current[1], today, holidays, zone)
        return CheckResult(
            open=True,
            reason="override" if current[2].kind == "override" else "open",
            closes_at=closes,
            local_time=local_now.isoformat(),
            timezone=schedule.timezone,
        )

    rule = _day_rule(schedule, today, holidays)
    if rule.kind == "holiday":
        reason: Reason = "holiday"
        template = schedule.messages.holiday or DEFAULT_MESSAGES["holiday"]
    elif rule.kind == "override":
        reason = "override"
        template = rule.message or schedule.messages.override or DEFAULT_MESSAGES["override"]
    else:
        reason = "closed"
        template = schedule.messages.closed or DEFAULT_MESSAGES["closed"]
    next_open = _next_open(schedule, now, today, holidays, zone)
    message = templates.render(
        template,
        {"holiday": rule.holiday or "", "date": today.isoformat(),
         "next_open": spoken_time(next_open, today) if next_open else ""},
    ).strip()
    return CheckResult(
        open=False,
        reason=reason,
        message=message or None,
        next_open_at=next_open,
        holiday=rule.holiday,
        local_time=local_now.isoformat(),
        timezone=schedule.timezone,
    )


_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")


def spoken_time(when: datetime, today: date) -> str:
    """'today at 9 AM', 'tomorrow at 9:30 AM', 'Monday at 9 AM', '26 January at 10 AM'
    (English, no locale lookup, so the same on every worker)."""
    hour = when.hour % 12 or 12
    clock = f"{hour}" if when.minute == 0 else f"{hour}:{when.minute:02d}"
    clock += " AM" if when.hour < 12 else " PM"
    days = (when.date() - today).days
    if days == 0:
        day = "today"
    elif days == 1:
        day = "tomorrow"
    elif days < 7:
        day = _DAY_NAMES[when.weekday()]
    else:
        day = f"{when.day} {_MONTH_NAMES[when.month - 1]}"
    return f"{day} at {clock}"


def _next_open(
    schedule: Schedule, now: datetime, today: date, holidays: Mapping[date, str], zone: ZoneInfo
) -> datetime | None:
    day = today
    for _ in range(LOOKAHEAD_DAYS):
        for start, _end, _rule in _windows(schedule, day, holidays, zone):
            if start > now:
                return start.astimezone(zone)
        day += timedelta(days=1)
    return None


def _merged_end(
    schedule: Schedule, end: datetime, today: date, holidays: Mapping[date, str], zone: ZoneInfo
) -> datetime:
    day = today
    for _ in range(8):  # a schedule open round the clock says it closes a week out at most
        extended = False
        for d in (day, day + timedelta(days=1)):
            for start, e, _rule in _windows(schedule, d, holidays, zone):
                if start <= end < e:
                    end, extended = e, True
        if not extended:
            break
        day = end.astimezone(zone).date()
    return end.astimezone(zone)


# --- what the workflow loads ---------------------------------------------------------------


class HolidayDate(_Model):
    date: dt.date
    name: str


class ScheduleSnapshot(_Model):
    """A schedule with its public holidays resolved: everything `check` needs, as data."""

    id: int
    schedule: Schedule
    holidays: list[HolidayDate] = Field(default_factory=list)

    def check(self, at: datetime) -> CheckResult:
        return check(self.schedule, at, {h.date: h.name for h in self.holidays})


def snapshot(schedule_id: int, schedule: Schedule, at: datetime) -> ScheduleSnapshot:
    table = public_holidays(
        schedule.holiday_country, schedule.holiday_subdivision, holiday_years(at)
    )
    # Only the dates a check around `at` can reach: the workflow history keeps this.
    local = at.astimezone(schedule.zone()).date()
    first, last = local - timedelta(days=2), local + timedelta(days=LOOKAHEAD_DAYS + 1)
    return ScheduleSnapshot(
        id=schedule_id,
        schedule=schedule,
        holidays=[HolidayDate(date=d, name=n) for d, n in sorted(table.items())
                  if first <= d <= last],
    )


def schedule_from_row(row: Any) -> Schedule:
    """The Schedule of a `BusinessHours` row (JSON columns as stored)."""
    return Schedule.model_validate(
        {
            "name": row.name,
            "timezone": row.timezone,
            "weekly": row.weekly or {},
            "holidayCountry": row.holiday_country,
            "holidaySubdivision": row.holiday_subdivision,
            "customHolidays": row.custom_holidays or [],
            "overrides": row.overrides or [],
            "messages": row.messages or {},
        }
    )



class ScheduleRequest(_Model):
    """The `load_business_hours` activity's input: which schedules, around which instant."""

    ids: list[int]
    at: datetime


class ScheduleBundle(_Model):
    """The activity's answer: the schedules found (with holidays), ids not found, and the
    test clock when one is configured (the workflow then checks at that instant)."""

    snapshots: list[ScheduleSnapshot] = Field(default_factory=list)
    missing: list[int] = Field(default_factory=list)
    clock: datetime | None = None

    def get(self, schedule_id: int) -> ScheduleSnapshot | None:
        return next((s for s in self.snapshots if s.id == schedule_id), None)
