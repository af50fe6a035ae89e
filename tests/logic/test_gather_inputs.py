"""Gather input validation by type, and sensitive values masked wherever they are recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from core.calls import CallFinalRecord, CallState
from core.flows import templates
from core.flows.inputs import Sensitive, reveal, spoken_for_confirm, validate_input
from core.flows.schema import GatherConfig


def cfg(**kw: Any) -> GatherConfig:
    return GatherConfig.model_validate({"message": "Enter it.", "saveToVariable": "v", **kw})


@pytest.mark.parametrize(
    ("config", "typed", "ok", "value_or_reason"),
    [
        ({"inputType": "digits", "minLength": 4, "maxLength": 6}, "1234", True, "1234"),
        ({"inputType": "digits", "minLength": 4, "maxLength": 6}, "1234#", True, "1234"),
        ({"inputType": "digits", "minLength": 4, "maxLength": 6}, "123", False, "too_short"),
        ({"inputType": "digits", "minLength": 4, "maxLength": 6}, "1234567", False, "too_long"),
        ({"inputType": "digits"}, "12*4", False, "not_digits"),
        ({"inputType": "number", "validationRules": {"minValue": 1, "maxValue": 12}},
         "7", True, 7),
        ({"inputType": "number", "validationRules": {"minValue": 1, "maxValue": 12}},
         "13", False, "out_of_range"),
        ({"inputType": "number", "validationRules": {"minValue": 1, "maxValue": 12}},
         "0", False, "out_of_range"),
        ({"inputType": "date", "minLength": 8, "maxLength": 8}, "26012026", True, "2026-01-26"),
        ({"inputType": "date", "minLength": 8, "maxLength": 8}, "29022026", False, "bad_date"),
        ({"inputType": "date", "minLength": 8, "maxLength": 8}, "29022024", True, "2024-02-29"),
        ({"inputType": "date", "minLength": 8, "maxLength": 8}, "32012026", False, "bad_date"),
        ({"inputType": "amount"}, "1500", True, "1500.00"),
        ({"inputType": "amount"}, "99*5", True, "99.50"),
        ({"inputType": "amount"}, "99*505", False, "bad_amount"),
        ({"inputType": "amount"}, "1*2*3", False, "bad_amount"),
        ({"inputType": "amount", "validationRules": {"maxValue": 5000}}, "6000", False,
         "out_of_range"),
        ({"inputType": "phone", "maxLength": 13}, "9876543210", True, "+919876543210"),
        ({"inputType": "phone", "maxLength": 13}, "09876543210", True, "+919876543210"),
        ({"inputType": "phone", "maxLength": 14}, "00442079460000", True, "+442079460000"),
        ({"inputType": "phone", "maxLength": 13}, "12345", False, "bad_phone"),
        ({"inputType": "phone", "maxLength": 13, "region": "GB"}, "02079460000", True,
         "+442079460000"),
        ({"inputType": "regex", "maxLength": 10,
          "validationRules": {"pattern": r"[1-9]\d{5}"}}, "560001", True, "560001"),
        ({"inputType": "regex", "maxLength": 10,
          "validationRules": {"pattern": r"[1-9]\d{5}"}}, "060001", False, "no_match"),
        ({"inputType": "luhn", "maxLength": 19}, "4111111111111111", True, "4111111111111111"),
        ({"inputType": "luhn", "maxLength": 19}, "4111111111111112", False, "bad_checksum"),
        ({"inputType": "digits", "maxLength": 19, "validationRules": {"luhn": True}},
         "79927398713", True, "79927398713"),
        ({"inputType": "digits", "maxLength": 19, "validationRules": {"luhn": True}},
         "79927398710", False, "bad_checksum"),
        ({"inputType": "digits"}, "", False, "empty"),
    ],
)
def test_every_input_type(config: dict, typed: str, ok: bool, value_or_reason: Any) -> None:
    result = validate_input(cfg(**config), typed)
    assert result.ok is ok
    assert (result.value if ok else result.reason) == value_or_reason


def test_spoken_forms_for_confirmation() -> None:
    assert validate_input(cfg(), "1234").spoken == "1 2 3 4"
    assert validate_input(cfg(inputType="amount"), "99*5").spoken == "99 rupees and 50 paise"
    assert validate_input(cfg(inputType="date", minLength=8, maxLength=8),
                          "26012026").spoken == "26 January 2026"
    card = validate_input(cfg(inputType="luhn", maxLength=19), "4111111111111111")
    assert spoken_for_confirm(card, sensitive=True) == "a number ending in 1 1 1 1"
    pin = validate_input(cfg(), "4321")
    assert spoken_for_confirm(pin, sensitive=True) == "a 4 digit number"


def test_sensitive_values_serialise_masked_everywhere() -> None:
    card = Sensitive.of("4111111111111111")
    pin = Sensitive.of("4321")
    variables = {"card": card, "pin": pin, "name": "x"}
    assert str(card) == "************1111" and str(pin) == "****"
    assert templates.render("card {{ card }} pin {{ pin }}", variables) == (
        "card ************1111 pin ****"
    )
    assert reveal(variables) == {"card": "4111111111111111", "pin": "4321", "name": "x"}
    record = CallFinalRecord(
        call_sid="CA1", status="completed", reason="done",
        ended_at=datetime.now(UTC), duration_s=1.0, path=[], variables=variables,
    )
    payload = pydantic_data_converter.payload_converter.to_payloads([record])[0]
    text = payload.data.decode()
    assert "4111111111111111" not in text and "4321" not in text
    assert json.loads(text)["variables"] == {"card": "************1111", "pin": "****",
                                             "name": "x"}
    state = CallState(call_sid="CA1", flow_id=None, flow_version=None, status="x",
                      current_node=None, variables=variables, pending=None, turn=1,
                      history=[], started_at=datetime.now(UTC))
    assert "4321" not in state.model_dump_json()
