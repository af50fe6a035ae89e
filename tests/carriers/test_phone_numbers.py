"""core.phone: every spelling of an Indian number becomes one E.164 string; logs see it masked."""

from __future__ import annotations

import pytest

from core.phone import mask, national_digits, to_e164


@pytest.mark.parametrize(
    "raw",
    ["09876543210", "+919876543210", "919876543210", "9876543210", "+91 98765 43210",
     "+91-98765-43210", "00919876543210", " 919876543210 "],
)
def test_indian_mobile_spellings(raw: str) -> None:
    assert to_e164(raw) == "+919876543210"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("08047112233", "+918047112233"), ("080 4711 2233", "+918047112233"),
     ("+14155552671", "+14155552671"), ("+911234567890", "+911234567890")],
)
def test_landlines_foreign_and_test_numbers(raw: str, expected: str) -> None:
    assert to_e164(raw) == expected


@pytest.mark.parametrize(
    "raw", [None, "", "   ", "anonymous", "12345", "sip:agent@pbx.example.com", "9" * 40]
)
def test_not_a_number(raw: str | None) -> None:
    assert to_e164(raw) is None


def test_national_digits() -> None:
    assert national_digits("+919876543210") == "09876543210"
    assert national_digits("+918047112233") == "08047112233"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [("+919876543210", "+91******3210"), ("09876543210", "+91******3210"),
     ("+14155552671", "+1******2671"), ("anonymous", "*********"), (None, "-"), ("", "-")],
)
def test_mask(raw: str | None, masked: str) -> None:
    assert mask(raw) == masked
