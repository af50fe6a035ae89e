"""Pure pieces of the analytics API: date ranges in the business time zone, keyset cursors,
spreadsheet-safe CSV cells and the masking of live call variables. No I/O here.

Definitions of every figure are in docs/metrics.md (and the OpenAPI descriptions).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from core.errors import InvalidInput
from core.phone import mask

# "Today", day buckets and hour buckets are in this zone unless a request names another.
BUSINESS_TZ = "Asia/Kolkata"
# Ranges a non-paginated report may cover (history pages by keyset and has no limit).
MAX_REPORT_RANGE = timedelta(days=366)
MAX_HOURLY_RANGE = timedelta(days=31)
MAX_HISTORY_LIMIT = 200
# Ended statuses: what rates divide by (an in-progress call has no outcome yet).
ENDED_STATUSES = ("completed", "abandoned", "failed")


def zone(name: str | None, field: str = "tz") -> ZoneInfo:
    try:
        return ZoneInfo(name or BUSINESS_TZ)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"{field}: unknown time zone {name!r}") from exc


def parse_instant(
    raw: str | None, field: str, tz: ZoneInfo, *, end: bool = False
) -> datetime | None:
    """An ISO-8601 date or date-time; a bare date is midnight in `tz` (for `to`, the midnight
    after it, so `to=2026-01-05` includes that whole day); a naive time is in `tz`."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tz)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{field}: {raw!r} is not an ISO-8601 date or date-time", status=400
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


@dataclass(frozen=True)
class Range:
    start: datetime | None
    end: datetime | None

    @property
    def span(self) -> timedelta | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


def parse_range(
    raw_from: str | None,
    raw_to: str | None,
    tz: ZoneInfo,
    *,
    default_span: timedelta | None = None,
    max_span: timedelta | None = MAX_REPORT_RANGE,
    now: datetime | None = None,
) -> Range:
    """`from`/`to` checked: parseable, not inverted, not longer than `max_span`. With a
    `default_span`, a missing end is now and a missing start is `default_span` before the end."""
    start = parse_instant(raw_from, "from", tz)
    end = parse_instant(raw_to, "to", tz, end=True)
    if default_span is not None:
        end = end or (now or datetime.now(UTC))
        start = start or end - default_span
    if start is not None and end is not None and start >= end:
        raise InvalidInput(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    if max_span is not None:
        if start is None or end is None:
            raise InvalidInput("from and to are both required for this report")
        if end - start > max_span:
            raise InvalidInput(
                f"from..to covers {(end - start).days} days; at most {max_span.days} days "
                "(page through /api/analytics/calls/history for longer spans)"
            )
    return Range(start, end)


def midnight(now: datetime, tz: ZoneInfo) -> datetime:
    """The start of `now`'s day in `tz` (DST-safe: the wall-clock midnight, then to UTC)."""
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tz)


def buckets(rng: Range, interval: str, tz: ZoneInfo) -> list[datetime]:
    """Every bucket start (local wall-clock hour or day in `tz`) that overlaps the range."""
    assert rng.start is not None and rng.end is not None
    local = rng.start.astimezone(tz)
    if interval == "day":
        cur = datetime.combine(local.date(), time(0), tz)
    else:
        cur = local.replace(minute=0, second=0, microsecond=0)
    out: list[datetime] = []
    while cur < rng.end:
        out.append(cur)
        if interval == "day":
            cur = datetime.combine(cur.date() + timedelta(days=1), time(0), tz)
        else:
            # Hours step in UTC so a DST change neither repeats nor skips a bucket.
            cur = (cur.astimezone(UTC) + timedelta(hours=1)).astimezone(tz)
    return out


# --- keyset cursors ----------------------------------------------------------------------------


def query_fingerprint(filters: dict[str, Any]) -> str:
    """What a cursor is bound to: the filters of the query it came from."""
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(started_at: datetime, row_id: int, fingerprint: str) -> str:
    raw = json.dumps({"t": started_at.isoformat(), "i": row_id, "q": fingerprint})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        started_at = datetime.fromisoformat(data["t"])
        row_id = int(data["i"])
        origin = str(data["q"])
        if started_at.tzinfo is None:
            raise ValueError("naive")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InvalidInput("cursor: not a cursor this API issued", status=400) from exc
    if origin != fingerprint:
        raise InvalidInput(
            "cursor: it belongs to a query with other filters; start again without a cursor",
            status=400,
        )
    return started_at, row_id


# --- CSV ---------------------------------------------------------------------------------------

_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet will not evaluate: one starting with = + - @ tab or CR gets
    a leading apostrophe (OWASP's advice). Numbers we computed are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_LEADS):
        return "'" + value
    return value


# --- masking -----------------------------------------------------------------------------------

# Words of a variable's name (snake_case or camelCase) that mark its value as sensitive.
_SENSITIVE_WORDS = frozenset({
    "pin", "mpin", "otp", "cvv", "cvc", "card", "account", "acct", "secret", "token",
    "password", "passwd", "passcode", "aadhaar", "aadhar", "pan", "ssn", "dob", "birth",
    "iban", "ifsc", "upi",
})


def _sensitive_name(name: str) -> bool:
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)
    return any(w.lower() in _SENSITIVE_WORDS for w in words)


_PHONE_LIKE = re.compile(r"^\+?\d[\d \-]{7,}$")


def mask_variables(variables: dict[str, Any], *, reveal_numbers: bool) -> dict[str, Any]:
    """Live call variables fit for a supervisor: values whose names look sensitive (pin, otp,
    card, account, ...) are replaced by stars; phone-like values are masked unless
    `reveal_numbers` (admins). Gather inputs marked sensitive already arrive masked."""
    out: dict[str, Any] = {}
    for key, value in variables.items():
        if _sensitive_name(key):
            out[key] = "****" if value not in (None, "") else value
        elif isinstance(value, dict):
            out[key] = mask_variables(value, reveal_numbers=reveal_numbers)
        elif isinstance(value, str) and not reveal_numbers and _PHONE_LIKE.match(value):
            out[key] = mask(value)
        else:
            out[key] = value
    return out


_E164 = re.compile(r"^\+[1-9]\d{5,14}$")


def fast_mask(number: str) -> str:
    """`core.phone.mask` for a stored E.164 number without parsing it (country calling codes
    are prefix-free, so the first 1-3 digit prefix that is a code is the code); a CSV export
    masks a number per row, and the full parse costs ~100x more. Anything else: `mask`."""
    if _E164.match(number):
        for size in (1, 2, 3):
            if int(number[1 : 1 + size]) in COUNTRY_CODE_TO_REGION_CODE:
                rest = number[1 + size :]
                if len(rest) > 4:
                    return f"{number[: 1 + size]}{'*' * (len(rest) - 4)}{rest[-4:]}"
                break
    return mask(number)


def caller_for(role_may_see_numbers: bool, number: str | None) -> str | None:
    if number is None:
        return None
    return number if role_may_see_numbers else fast_mask(number)
