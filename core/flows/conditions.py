"""Decision conditions evaluated as data: no `eval`, no attribute access, bounded regexes.

`evaluate(expr, facts)` answers one `ConditionExpr` (variable, caller, time, all/any) against
the call's facts. It never raises on the call's data: a value of the wrong type (a number test
on text, a missing variable) is simply "no match", so a decision falls through to the next
condition or `default`. Pure and deterministic (the caller passes the clock and any
business-hours results), importable from workflow code.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.flows.inputs import unwrap
from core.flows.schema import WEEKDAYS, ConditionExpr
from core.phone import national_digits, to_e164

DEFAULT_TIMEZONE = "Asia/Kolkata"
# Text longer than this is cut before a regex runs on it (API responses can be long).
MAX_SUBJECT_CHARS = 1000
# What callers' networks send when the number is withheld.
WITHHELD = frozenset({"", "anonymous", "unknown", "withheld", "private", "restricted",
                      "unavailable"})


@dataclass
class Facts:
    """What a decision may look at."""

    variables: Mapping[str, Any]
    caller: str | None
    now: datetime  # timezone-aware
    # Business-hours results at `now` by schedule id; a missing id is "unknown" (no match).
    schedules: Mapping[int, bool] = field(default_factory=dict)


def evaluate(expr: ConditionExpr, facts: Facts) -> bool:
    result = _evaluate(expr, facts)
    return not result if expr.negate else result


def _evaluate(expr: ConditionExpr, facts: Facts) -> bool:
    if expr.kind == "all":
        return all(evaluate(c, facts) for c in expr.conditions or ())
    if expr.kind == "any":
        return any(evaluate(c, facts) for c in expr.conditions or ())
    if expr.kind == "variable":
        return _variable(expr, facts.variables)
    if expr.kind == "caller":
        return _caller(expr, facts.caller)
    return _time(expr, facts)


def schedule_ids(expr: ConditionExpr) -> Iterator[int]:
    """Business-hours schedules a condition (and its children) look at."""
    if expr.business_hours_id is not None:
        yield expr.business_hours_id
    for sub in expr.conditions or ():
        yield from schedule_ids(sub)


def uses_clock(expr: ConditionExpr) -> bool:
    return expr.kind == "time" or any(uses_clock(c) for c in expr.conditions or ())


# --- variables -------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if not text or len(text) > 64:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _equal(actual: Any, expected: Any, ignore_case: bool) -> bool:
    if isinstance(expected, bool):
        if isinstance(actual, bool):
            return actual is expected
        return _text(actual).strip().lower() == _text(expected)
    if isinstance(expected, int | float):
        number = _number(actual)
        return number is not None and number == float(expected)
    a, b = _text(actual), _text(expected)
    return a.lower() == b.lower() if ignore_case else a == b


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


def _search(pattern: str, subject: str, ignore_case: bool) -> bool:
    try:
        regex = _compiled(pattern, ignore_case)
    except re.error:
        return False  # publish refuses bad patterns; an old version must still not crash
    return regex.search(subject[:MAX_SUBJECT_CHARS]) is not None


def _variable(expr: ConditionExpr, variables: Mapping[str, Any]) -> bool:
    present = expr.variable in variables
    actual = unwrap(variables.get(expr.variable)) if present else None
    op, value, icase = expr.operator, expr.value, bool(expr.ignore_case)
    exists = present and actual is not None and actual != ""
    if op == "exists":
        return exists
    if op == "not_exists":
        return not exists
    if op == "equals":
        return exists and _equal(actual, value, icase)
    if op == "not_equals":
        return not (exists and _equal(actual, value, icase))
    if op in ("in", "not_in"):
        found = exists and any(_equal(actual, v, icase) for v in value or [])  # type: ignore[union-attr]
        return found if op == "in" else not found
    if not exists:
        return False
    if op == "contains":
        if isinstance(actual, list | tuple):
            return any(_equal(item, value, icase) for item in actual)
        haystack, needle = _text(actual), _text(value)
        return needle.lower() in haystack.lower() if icase else needle in haystack
    if op == "regex":
        return _search(str(value), _text(actual), icase)
    if op in ("gt", "gte", "lt", "lte"):
        number = _number(actual)
        if number is None:
            return False
        limit = float(value)  # type: ignore[arg-type]
        return {
            "gt": number > limit, "gte": number >= limit,
            "lt": number < limit, "lte": number <= limit,
        }[op]
    return False


# --- caller ----------------------------------------------------------------------------------


def _caller_forms(caller: str | None) -> tuple[str, str, str] | None:
    """(E.164, national with trunk 0, national significant) or None when withheld."""
    if caller is None or caller.strip().lower() in WITHHELD:
        return None
    e164 = to_e164(caller)
    if e164 is None:
        return None
    national = national_digits(e164)
    return e164, national, national.lstrip("0")


def _caller(expr: ConditionExpr, caller: str | None) -> bool:
    forms = _caller_forms(caller)
    if expr.operator == "anonymous":
        return forms is None
    if forms is None:
        return False
    e164 = forms[0]
    op, value = expr.operator, expr.value
    if op == "equals":
        return to_e164(str(value)) == e164
    if op == "in":
        return any(to_e164(str(v)) == e164 for v in value or [])  # type: ignore[union-attr]
    if op == "prefix":
        prefix = str(value).replace(" ", "").replace("-", "")
        if prefix.startswith("+"):
            return e164.startswith(prefix)
        return forms[1].startswith(prefix) or forms[2].startswith(prefix)
    if op == "regex":
        return _search(str(value), e164, bool(expr.ignore_case))
    return False


# --- time ------------------------------------------------------------------------------------


def _time(expr: ConditionExpr, facts: Facts) -> bool:
    op = expr.operator
    if op in ("open", "closed"):
        if expr.business_hours_id is None or expr.business_hours_id not in facts.schedules:
            return False  # unknown: neither open nor closed
        is_open = facts.schedules[expr.business_hours_id]
        return is_open if op == "open" else not is_open
    local = facts.now.astimezone(ZoneInfo(expr.timezone or DEFAULT_TIMEZONE))
    if op == "weekday":
        days = expr.value if isinstance(expr.value, list) else [expr.value]
        return WEEKDAYS[local.weekday()] in days
    if op == "between":
        start, end = (str(v) for v in expr.value)  # type: ignore[union-attr]
        now = f"{local.hour:02d}:{local.minute:02d}"
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # overnight: 22:00-06:00
    return False
