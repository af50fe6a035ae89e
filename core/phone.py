"""Phone numbers: E.164 in, E.164 out, masked in logs.

Indian carriers write the same number as `09876543210`, `+919876543210`, `919876543210` or
`+91 98765 43210`; everything past the adapters sees `+919876543210`.
"""

from __future__ import annotations

import functools

import phonenumbers

DEFAULT_REGION = "IN"
# Longer than any real number (E.164 allows 15 digits) plus room for spaces and dashes.
_MAX_RAW_LEN = 32


@functools.lru_cache(maxsize=4096)
def to_e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """`raw` as E.164, or None when it is empty or cannot be a phone number (withheld, SIP).

    Cached: every webhook of a call parses the same two numbers again."""
    if raw is None:
        return None
    text = raw.strip()
    if not text or len(text) > _MAX_RAW_LEN:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    # "Possible" (right length for the country) rather than "valid": new number ranges and
    # test numbers must not be turned away by an out-of-date metadata table.
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def national_digits(e164: str, region: str = DEFAULT_REGION) -> str:
    """The number as dialled inside its country, digits only (`09876543210` for India)."""
    number = phonenumbers.parse(e164, region)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())


def mask(number: str | None) -> str:
    """A number fit for logs: country code and last four digits (`+91******3210`)."""
    if not number:
        return "-"
    e164 = to_e164(number)
    if e164 is not None:
        country = str(phonenumbers.parse(e164).country_code)
        rest = e164[1 + len(country) :]
        return f"+{country}{'*' * (len(rest) - 4)}{rest[-4:]}"
    # Not a phone number (withheld, SIP URI, garbage): keep only its length's worth of stars.
    return "*" * min(len(number), _MAX_RAW_LEN)
