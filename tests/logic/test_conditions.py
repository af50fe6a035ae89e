"""Decision conditions: every kind and operator, evaluated as data."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from core.flows.conditions import Facts, evaluate, schedule_ids, uses_clock
from core.flows.inputs import Sensitive
from core.flows.schema import ConditionExpr

IST = timezone(timedelta(hours=5, minutes=30))
TUESDAY_10 = datetime(2026, 1, 27, 10, 0, tzinfo=IST)
VARS: dict[str, Any] = {
    "tier": "Gold", "balance": "1500.50", "count": 3, "flag": True, "empty": "",
    "tags": ["vip", "blr"], "note": "order delayed by rain", "pin": Sensitive.of("4321"),
}


def cond(**kw: Any) -> ConditionExpr:
    return ConditionExpr.model_validate(kw)


def facts(caller: str | None = "+919876543210", now: datetime = TUESDAY_10,
          schedules: dict[int, bool] | None = None) -> Facts:
    return Facts(variables=VARS, caller=caller, now=now, schedules=schedules or {})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"variable": "tier", "operator": "equals", "value": "Gold"}, True),
        ({"variable": "tier", "operator": "equals", "value": "gold"}, False),
        ({"variable": "tier", "operator": "equals", "value": "gold", "ignoreCase": True}, True),
        ({"variable": "count", "operator": "equals", "value": 3}, True),
        ({"variable": "count", "operator": "equals", "value": "3"}, True),
        ({"variable": "flag", "operator": "equals", "value": True}, True),
        ({"variable": "tier", "operator": "not_equals", "value": "Silver"}, True),
        ({"variable": "missing", "operator": "not_equals", "value": "x"}, True),
        ({"variable": "tier", "operator": "in", "value": ["Gold", "Platinum"]}, True),
        ({"variable": "tier", "operator": "not_in", "value": ["Gold", "Platinum"]}, False),
        ({"variable": "note", "operator": "contains", "value": "delayed"}, True),
        ({"variable": "tags", "operator": "contains", "value": "vip"}, True),
        ({"variable": "tags", "operator": "contains", "value": "del"}, False),
        ({"variable": "note", "operator": "regex", "value": r"^order \w+ by"}, True),
        ({"variable": "note", "operator": "regex", "value": "RAIN", "ignoreCase": True}, True),
        ({"variable": "balance", "operator": "gt", "value": 1000}, True),
        ({"variable": "balance", "operator": "gte", "value": 1500.5}, True),
        ({"variable": "balance", "operator": "lt", "value": 1000}, False),
        ({"variable": "count", "operator": "lte", "value": 3}, True),
        ({"variable": "tier", "operator": "gt", "value": 1}, False),  # text: no match
        ({"variable": "tier", "operator": "exists"}, True),
        ({"variable": "empty", "operator": "exists"}, False),
        ({"variable": "missing", "operator": "not_exists"}, True),
        ({"variable": "pin", "operator": "equals", "value": "4321"}, True),  # real value
        ({"variable": "tier", "operator": "equals", "value": "Gold", "negate": True}, False),
    ],
)
def test_variable_conditions(spec: dict[str, Any], expected: bool) -> None:
    assert evaluate(cond(kind="variable", **spec), facts()) is expected


@pytest.mark.parametrize(
    ("spec", "caller", "expected"),
    [
        ({"operator": "equals", "value": "09876543210"}, "+919876543210", True),
        ({"operator": "in", "value": ["+919800000000", "9876543210"]}, "+919876543210", True),
        ({"operator": "in", "value": ["+919800000000"]}, "+919876543210", False),
        ({"operator": "prefix", "value": "+9198"}, "+919876543210", True),
        ({"operator": "prefix", "value": "080"}, "08041234567", True),  # Bengaluru landline
        ({"operator": "prefix", "value": "98"}, "+919876543210", True),
        ({"operator": "prefix", "value": "+9180"}, "+919876543210", False),
        ({"operator": "regex", "value": r"^\+91(98|99)"}, "+919876543210", True),
        ({"operator": "anonymous"}, "", True),
        ({"operator": "anonymous"}, "anonymous", True),
        ({"operator": "anonymous"}, "Withheld", True),
        ({"operator": "anonymous"}, None, True),
        ({"operator": "anonymous"}, "+919876543210", False),
        ({"operator": "equals", "value": "+919876543210"}, None, False),
    ],
)
def test_caller_conditions(spec: dict[str, Any], caller: str | None, expected: bool) -> None:
    assert evaluate(cond(kind="caller", **spec), facts(caller=caller)) is expected


def test_time_conditions_business_hours_weekday_and_between() -> None:
    open_ = cond(kind="time", operator="open", businessHoursId=4)
    closed = cond(kind="time", operator="closed", businessHoursId=4)
    assert evaluate(open_, facts(schedules={4: True}))
    assert not evaluate(closed, facts(schedules={4: True}))
    assert evaluate(closed, facts(schedules={4: False}))
    # An unknown schedule (not loaded, deleted) is neither open nor closed.
    assert not evaluate(open_, facts()) and not evaluate(closed, facts())

    weekday = cond(kind="time", operator="weekday", value=["tue", "wed"])
    assert evaluate(weekday, facts())
    assert not evaluate(weekday, facts(now=TUESDAY_10 + timedelta(days=4)))
    # 10:00 IST Tuesday is 05:30 Tuesday in London but Monday 23:30 in Los Angeles.
    la = cond(kind="time", operator="weekday", value="mon", timezone="America/Los_Angeles")
    assert evaluate(la, facts())

    between = cond(kind="time", operator="between", value=["09:00", "17:30"])
    assert evaluate(between, facts())
    night = cond(kind="time", operator="between", value=["22:00", "06:00"])
    assert not evaluate(night, facts())
    assert evaluate(night, facts(now=TUESDAY_10.replace(hour=23)))
    assert evaluate(night, facts(now=TUESDAY_10.replace(hour=5, minute=59)))
    assert not evaluate(night, facts(now=TUESDAY_10.replace(hour=6)))


def test_all_and_any_groups_nest() -> None:
    vip = cond(kind="variable", variable="tier", operator="in", value=["Gold", "Platinum"])
    rich = cond(kind="variable", variable="balance", operator="gt", value=10_000)
    mobile = cond(kind="caller", operator="prefix", value="+919")
    group = cond(kind="all", conditions=[
        vip.model_dump(), {"kind": "any", "conditions": [rich.model_dump(), mobile.model_dump()]}
    ])
    assert evaluate(group, facts())
    assert not evaluate(group, facts(caller="08041234567"))
    assert evaluate(cond(kind="any", conditions=[rich.model_dump(), vip.model_dump()]), facts())
    assert not evaluate(cond(kind="all", negate=True, conditions=[vip.model_dump()]), facts())


def test_schedule_ids_and_clock_use_are_found_in_groups() -> None:
    group = cond(kind="any", conditions=[
        {"kind": "variable", "variable": "x", "operator": "exists"},
        {"kind": "all", "conditions": [{"kind": "time", "operator": "open",
                                        "businessHoursId": 9}]},
    ])
    assert list(schedule_ids(group)) == [9] and uses_clock(group)
    assert not uses_clock(cond(kind="variable", variable="x", operator="exists"))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"kind": "variable", "variable": "x", "operator": "gt", "value": "ten"}, "needs a number"),
        ({"kind": "variable", "variable": "x", "operator": "regex", "value": "(unclosed"},
         "invalid regular expression"),
        ({"kind": "variable", "variable": "x", "operator": "in", "value": "a"}, "non-empty list"),
        ({"kind": "variable", "operator": "exists"}, "needs variable"),
        ({"kind": "caller", "operator": "contains", "value": "9"}, "operator must be one of"),
        ({"kind": "time", "operator": "weekday", "value": ["funday"]}, "weekday values"),
        ({"kind": "time", "operator": "between", "value": ["9", "17"]}, "between needs"),
        ({"kind": "time", "operator": "weekday", "value": "mon", "timezone": "Nowhere/City"},
         "unknown time zone"),
        ({"kind": "time", "operator": "open", "businessHoursId": 1, "timezone": "Asia/Kolkata"},
         "timezone applies only"),
        ({"kind": "all"}, "needs conditions"),
    ],
)
def test_bad_conditions_are_refused_at_parse(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConditionExpr.model_validate(spec)
    assert fragment in str(info.value)
