"""Gather Input validation, and the wrapper that keeps sensitive input out of every record.

`validate_input(cfg, digits)` checks what a caller typed against the node's input type
(digits, number, date DDMMYYYY, amount, phone, regex, Luhn) and rules, and returns the typed
value to store or the reason it was refused. `Sensitive` holds a value the flow flagged as
sensitive: templates, logs, the `state` query, activity inputs and the database only ever see
its masked form; conditions and the API node read the real value in memory (`unwrap`,
`reveal`). Pure and deterministic, importable from workflow code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, PrivateAttr, model_serializer

from core.flows.schema import GatherConfig
from core.flows.vault import placeholder
from core.telephony import Wire

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def mask_value(text: str) -> str:
    """Only the last four characters of a long value survive; a short one (a PIN) none."""
    if len(text) >= 8:
        return "*" * (len(text) - 4) + text[-4:]
    return "*" * len(text)


class Sensitive(BaseModel):
    """A value typed by the caller that must not be stored: serialises as its mask.

    It holds the real value in memory (`of`: digits a test or a non-gateway client sent in
    clear), or only a reference to the call vault (`sealed`: what the API forwards), in which
    case the workflow never sees the value at all."""

    model_config = ConfigDict(frozen=True)

    masked: str
    _raw: str = PrivateAttr(default="")
    _ref: str = PrivateAttr(default="")

    @classmethod
    def of(cls, raw: Any) -> Sensitive:
        text = str(raw)
        out = cls(masked=mask_value(text))
        out._raw = text
        return out

    @classmethod
    def sealed(cls, ref: str, masked: str) -> Sensitive:
        out = cls(masked=masked)
        out._ref = ref
        return out

    @property
    def raw(self) -> str:
        """The real value where the workflow holds it, else the mask (what conditions on a
        sealed value compare: the workflow cannot know more)."""
        return self._raw or self.masked

    @property
    def for_request(self) -> str:
        """What an API node's request carries: the real value, or the vault placeholder the
        `call_api` activity replaces with it just before sending."""
        return self._raw or (placeholder(self._ref) if self._ref else self.masked)

    def __str__(self) -> str:  # templates render the mask
        return self.masked

    @model_serializer
    def _as_mask(self) -> str:
        return self.masked


def unwrap(value: Any) -> Any:
    """The real value behind a `Sensitive`, else the value itself (for in-memory tests)."""
    return value.raw if isinstance(value, Sensitive) else value


def reveal(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables with sensitive values unwrapped (what the API node's templates render):
    sealed ones as vault placeholders, which only the `call_api` activity resolves."""
    return {k: v.for_request if isinstance(v, Sensitive) else v for k, v in variables.items()}


@dataclass(frozen=True)
class InputResult:
    ok: bool
    value: Any = None  # what is stored in the variable (typed)
    spoken: str = ""  # how the value is read back for confirmation
    reason: str | None = None  # why it was refused


def _spaced(text: str) -> str:
    return " ".join(text)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return len(digits) >= 2 and total % 10 == 0


def _fail(reason: str) -> InputResult:
    return InputResult(ok=False, reason=reason)


def validate_input(cfg: GatherConfig, typed: str) -> InputResult:
    """Check the caller's keys against the node's type and rules; never raises."""
    text = typed.strip().replace(" ", "")
    if cfg.finish_on_key and text.endswith(cfg.finish_on_key):
        text = text[: -len(cfg.finish_on_key)]
    if not text:
        return _fail("empty")
    allowed = "0123456789*" if cfg.input_type == "amount" else "0123456789"
    if any(ch not in allowed for ch in text):
        return _fail("not_digits")
    if len(text) < cfg.min_length:
        return _fail("too_short")
    if len(text) > cfg.max_length:
        return _fail("too_long")
    rules = cfg.validation_rules
    kind = cfg.input_type
    result: InputResult
    if kind == "number":
        number = int(text)
        result = InputResult(True, number, _spaced(text))
    elif kind == "amount":
        result = _amount(text)
    elif kind == "date":
        result = _date(text)
    elif kind == "phone":
        result = _phone(text, cfg.region or "IN")
    elif kind == "luhn":
        result = InputResult(True, text, _spaced(text)) if _luhn_ok(text) else _fail(
            "bad_checksum"
        )
    else:  # digits, regex (the pattern is checked below)
        result = InputResult(True, text, _spaced(text))
    if not result.ok:
        return result
    if rules is not None:
        if rules.pattern is not None and not _fullmatch(rules.pattern, text):
            return _fail("no_match")
        if rules.luhn and kind != "luhn" and not _luhn_ok(text):
            return _fail("bad_checksum")
        if kind in ("number", "amount"):
            value = float(result.value)
            if rules.min_value is not None and value < rules.min_value:
                return _fail("out_of_range")
            if rules.max_value is not None and value > rules.max_value:
                return _fail("out_of_range")
    return result


def _fullmatch(pattern: str, text: str) -> bool:
    try:
        return re.fullmatch(pattern, text) is not None
    except re.error:
        return False


def _amount(text: str) -> InputResult:
    """Rupees with `*` as the decimal point: 1500 → 1500.00, 99*5 → 99.50."""
    if text.count("*") > 1 or text.startswith("*") or text.endswith("*"):
        return _fail("bad_amount")
    whole, _, fraction = text.partition("*")
    if len(fraction) > 2:
        return _fail("bad_amount")
    try:
        amount = Decimal(f"{whole}.{fraction or '0'}").quantize(Decimal("0.01"))
    except InvalidOperation:
        return _fail("bad_amount")
    rupees, paise = divmod(int(amount * 100), 100)
    spoken = f"{rupees} rupees" + (f" and {paise} paise" if paise else "")
    return InputResult(True, f"{amount:.2f}", spoken)


def _date(text: str) -> InputResult:
    if len(text) != 8:
        return _fail("bad_date")
    try:
        day = date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError:
        return _fail("bad_date")
    return InputResult(True, day.isoformat(), f"{day.day} {MONTHS[day.month - 1]} {day.year}")


def _phone(text: str, region: str) -> InputResult:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return _fail("bad_phone")
    if not phonenumbers.is_valid_number(number):
        return _fail("bad_phone")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return InputResult(True, e164, _spaced(e164.lstrip("+")))


class SealedInputCheck(Wire):
    """Validate the sealed keys `ref` of call `call_sid` as gather `config` asks."""

    call_sid: str
    ref: str
    config: GatherConfig


class SealedInputResult(Wire):
    """What the workflow may know of sealed keys: valid or why not, the mask, the read-back."""

    found: bool  # False: the vault no longer has them (expired, Redis lost): ask again
    ok: bool = False
    reason: str | None = None
    masked: str = ""
    spoken: str = ""  # "a number ending in 1 1 1 1" (never the whole value)


def spoken_for_confirm(result: InputResult, sensitive: bool) -> str:
    """What "you entered …" says: the whole value, or for a sensitive one its last digits."""
    if not sensitive:
        return result.spoken
    digits = re.sub(r"\D", "", str(result.value))
    if len(digits) >= 8:
        return "a number ending in " + _spaced(digits[-4:])
    return f"a {len(digits)} digit number"
