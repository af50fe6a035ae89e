"""core.business_hours: weekly hours, overnight spans, holidays, overrides, DST, nextOpenAt."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from core.business_hours import (
    Schedule,
    check,
    check_holiday_region,
    public_holidays,
    snapshot,
)

IST = timezone(timedelta(hours=5, minutes=30))
DAY = [{"start": "09:00", "end": "18:00"}]


def support(**extra) -> Schedule:
    return Schedule.model_validate({
        "name": "Support hours",
        "weekly": {d: DAY for d in ("mon", "tue", "wed", "thu", "fri", "sat")},
        "holidayCountry": "IN",
        **extra,
    })


def at_ist(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=IST)


def run(schedule: Schedule, at: datetime):
    return snapshot(1, schedule, at).check(at)


def test_open_inside_hours_with_closing_time():
    result = run(support(), at_ist(2026, 1, 27, 10))  # a Tuesday
    assert result.open and result.reason == "open"
    assert result.closes_at == at_ist(2026, 1, 27, 18)
    assert result.next_open_at is None and result.message is None


def test_boundaries_start_inclusive_end_exclusive():
    assert run(support(), at_ist(2026, 1, 27, 9)).open
    assert not run(support(), at_ist(2026, 1, 27, 18)).open
    assert not run(support(), at_ist(2026, 1, 27, 8, 59)).open


def test_closed_after_hours_next_open_is_tomorrow_morning():
    result = run(support(), at_ist(2026, 1, 27, 19))
    assert not result.open and result.reason == "closed"
    assert result.next_open_at == at_ist(2026, 1, 28, 9)
    assert result.message and "business hours" in result.message


def test_across_the_weekday_boundary_saturday_night_to_monday():
    saturday_night = at_ist(2026, 1, 31, 23, 30)
    result = run(support(), saturday_night)
    assert not result.open
    assert result.next_open_at == at_ist(2026, 2, 2, 9)  # Sunday closed, Monday 09:00
    sunday = run(support(), at_ist(2026, 2, 1, 12))
    assert not sunday.open and sunday.next_open_at == at_ist(2026, 2, 2, 9)


def test_utc_instant_is_read_in_the_schedule_zone():
    # 03:45 UTC is 09:15 IST: open, though it is "before nine" in UTC.
    assert run(support(), datetime(2026, 1, 27, 3, 45, tzinfo=UTC)).open


def test_republic_day_is_a_holiday_with_its_name_in_the_message():
    result = run(support(), at_ist(2026, 1, 26, 11))  # a Monday
    assert not result.open and result.reason == "holiday"
    assert result.holiday == "Republic Day"
    assert "Republic Day" in result.message
    assert result.next_open_at == at_ist(2026, 1, 27, 9)


def test_subdivision_holidays():
    table = public_holidays("IN", "MH", [2026])
    assert table[date(2026, 5, 1)].endswith("Maharashtra Day")
    schedule = support(holidaySubdivision="MH")
    assert run(schedule, at_ist(2026, 5, 1, 10)).reason == "holiday"


def test_custom_holiday_and_annual_custom_holiday():
    schedule = support(customHolidays=[
        {"date": "2026-03-10", "name": "Company offsite"},
        {"date": "2020-07-01", "name": "Founders' Day", "annual": True},
    ], messages={"holiday": "Closed for {{ holiday }} today."})
    offsite = run(schedule, at_ist(2026, 3, 10, 10))
    assert (offsite.reason, offsite.message) == ("holiday", "Closed for Company offsite today.")
    founders = run(schedule, at_ist(2026, 7, 1, 10))
    assert founders.reason == "holiday" and founders.holiday == "Founders' Day"


def test_override_closed_for_one_date_with_its_message():
    schedule = support(overrides=[
        {"date": "2026-01-27", "closed": True, "message": "Closed for the annual stock-take."}
    ])
    result = run(schedule, at_ist(2026, 1, 27, 10))
    assert not result.open and result.reason == "override"
    assert result.message == "Closed for the annual stock-take."
    assert result.next_open_at == at_ist(2026, 1, 28, 9)


def test_override_special_hours_for_a_range_beats_a_holiday():
    schedule = support(overrides=[
        {"from": "2026-01-24", "to": "2026-01-26",
         "intervals": [{"start": "10:00", "end": "14:00"}]}
    ])
    # Saturday half-day and Republic Day opened by the override.
    assert run(schedule, at_ist(2026, 1, 26, 11)).open
    assert run(schedule, at_ist(2026, 1, 26, 11)).reason == "override"
    after = run(schedule, at_ist(2026, 1, 24, 15))
    assert not after.open and after.reason == "override"
    assert after.next_open_at == at_ist(2026, 1, 25, 10)  # Sunday opened by the override


def test_overnight_span_runs_into_the_next_day():
    schedule = Schedule.model_validate({
        "name": "Night desk",
        "weekly": {"fri": [{"start": "22:00", "end": "02:00", "overnight": True}],
                   "sat": [{"start": "10:00", "end": "12:00"}]},
    })
    assert run(schedule, at_ist(2026, 1, 30, 23)).open  # Friday 23:00
    early_saturday = run(schedule, at_ist(2026, 1, 31, 1, 30))
    assert early_saturday.open and early_saturday.closes_at == at_ist(2026, 1, 31, 2)
    assert not run(schedule, at_ist(2026, 1, 31, 3)).open
    assert run(schedule, at_ist(2026, 1, 31, 3)).next_open_at == at_ist(2026, 1, 31, 10)
    # Thursday night is not Friday night.
    assert not run(schedule, at_ist(2026, 1, 30, 1)).open


def test_touching_windows_merge_into_one_closing_time():
    schedule = Schedule.model_validate({
        "name": "Late", "weekly": {
            "mon": [{"start": "20:00", "end": "24:00"}],
            "tue": [{"start": "00:00", "end": "03:00"}],
        }})
    result = run(schedule, at_ist(2026, 1, 26, 21))
    assert result.open and result.closes_at == at_ist(2026, 1, 27, 3)


def test_dst_new_york_same_utc_instant_open_in_summer_closed_in_winter():
    schedule = Schedule.model_validate({
        "name": "NY office", "timezone": "America/New_York",
        "weekly": {d: DAY for d in ("mon", "tue", "wed", "thu", "fri")},
    })
    # 13:30 UTC: 09:30 EDT in July (open), 08:30 EST in January (closed).
    assert check(schedule, datetime(2026, 7, 15, 13, 30, tzinfo=UTC)).open
    winter = check(schedule, datetime(2026, 1, 14, 13, 30, tzinfo=UTC))
    assert not winter.open
    assert winter.next_open_at == datetime(2026, 1, 14, 9, tzinfo=ZoneInfo("America/New_York"))
    assert winter.next_open_at.utcoffset() == timedelta(hours=-5)


def test_dst_transition_days_keep_wall_clock_hours():
    schedule = Schedule.model_validate({
        "name": "London", "timezone": "Europe/London",
        "weekly": {"sun": [{"start": "00:30", "end": "03:00"}]},
    })
    # 29 March 2026: clocks go from 01:00 GMT to 02:00 BST. Open 00:30 GMT to 03:00 BST,
    # which is 01:30 of real time.
    opens = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert check(schedule, opens).open
    assert check(schedule, opens).closes_at == datetime(2026, 3, 29, 2, tzinfo=UTC)
    assert not check(schedule, datetime(2026, 3, 29, 2, 0, tzinfo=UTC)).open
    # 25 October 2026: 02:00 BST back to 01:00 GMT; 00:30 BST is 23:30 UTC the day before.
    autumn = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    assert check(schedule, autumn).open
    assert check(schedule, autumn).closes_at == datetime(2026, 10, 25, 3, tzinfo=UTC)


def test_next_open_skips_a_holiday_weekend():
    # Friday evening before... Republic Day falls on Monday 26 Jan 2026; Saturday is open.
    result = run(support(), at_ist(2026, 1, 24, 19))  # Saturday evening
    assert result.next_open_at == at_ist(2026, 1, 27, 9)  # Sunday closed, Monday holiday


def test_never_open_has_no_next_open():
    schedule = Schedule.model_validate({"name": "Closed", "weekly": {}})
    result = check(schedule, at_ist(2026, 1, 27, 10))
    assert not result.open and result.next_open_at is None


def test_naive_instant_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        check(support(), datetime(2026, 1, 27, 10))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"weekly": {"mon": [{"start": "18:00", "end": "09:00"}]}}, "inverted"),
        ({"weekly": {"mon": [{"start": "09:00", "end": "09:00"}]}}, "inverted or empty"),
        ({"weekly": {"mon": [{"start": "09:00", "end": "13:00"},
                             {"start": "12:00", "end": "18:00"}]}}, "overlap"),
        ({"weekly": {"mon": [{"start": "22:00", "end": "03:00", "overnight": True}],
                     "tue": [{"start": "02:00", "end": "05:00"}]}}, "overnight"),
        ({"weekly": {"mon": [{"start": "25:00", "end": "26:00"}]}}, "pattern"),
        ({"weekly": {"funday": []}}, "Extra inputs"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"overrides": [{"date": "2026-01-01"}]}, "either"),
        ({"overrides": [{"from": "2026-02-01", "to": "2026-01-01", "closed": True}]}, "before"),
        ({"overrides": [{"date": "2026-01-01", "closed": True},
                        {"from": "2025-12-31", "to": "2026-01-02", "closed": True}]}, "overlap"),
        ({"customHolidays": [{"date": "2026-01-01", "name": "a"},
                             {"date": "2026-01-01", "name": "b"}]}, "twice"),
        ({"messages": {"closed": "{% for x in y %}"}}, "does not parse"),
        ({"holidaySubdivision": "MH"}, "needs holidayCountry"),
    ],
)
def test_invalid_schedules_are_refused_naming_the_problem(body, fragment):
    with pytest.raises(ValidationError) as info:
        Schedule.model_validate({"name": "x", **body})
    assert fragment in str(info.value)


def test_unknown_holiday_country_and_subdivision():
    assert check_holiday_region("IN", "MH") is None
    assert "unknown holiday country" in check_holiday_region("XX", None)
    assert "unknown subdivision" in check_holiday_region("IN", "ZZ")


def test_messages_can_say_when_the_line_opens_again():
    schedule = support(messages={"closed": "Closed. We open {{ next_open }}.",
                                 "holiday": "Closed for {{ holiday }}; back {{ next_open }}."})
    assert run(schedule, at_ist(2026, 1, 27, 19)).message == "Closed. We open tomorrow at 9 AM."
    assert run(schedule, at_ist(2026, 1, 27, 7)).message == "Closed. We open today at 9 AM."
    assert run(schedule, at_ist(2026, 1, 24, 19)).message == "Closed. We open Tuesday at 9 AM."
    assert run(schedule, at_ist(2026, 1, 26, 10)).message == (
        "Closed for Republic Day; back tomorrow at 9 AM."
    )
    late = support(weekly={"mon": [{"start": "13:30", "end": "18:00"}]},
                   messages={"closed": "Back {{ next_open }}."})
    assert run(late, at_ist(2026, 1, 27, 19)).message == "Back Monday at 1:30 PM."
    never = Schedule.model_validate({"name": "x", "messages": {"closed": "Open {{ next_open }}"}})
    assert check(never, at_ist(2026, 1, 27, 19)).message == "Open"
