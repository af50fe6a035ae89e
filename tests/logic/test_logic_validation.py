"""Publish-time checks of decision, gather and API nodes (validate_flow), by node and field."""

from __future__ import annotations

from typing import Any

import pytest

from core.flows.logic_checks import regex_risk
from core.flows.schema import FlowDefinition
from core.flows.validate import validate_flow


def n(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "name": node_id, "config": config}


def problems(node: dict[str, Any], *, allow: list[str] | None = None,
             secrets: set[str] | None = None) -> set[tuple[str | None, str | None, str]]:
    ports = {"decision": ["default"], "gather": ["valid"], "api": ["success", "error"]}
    nodes = [n("w", "welcome"), node, n("bye", "hangup")]
    conns = [{"fromNode": "w", "port": "next", "toNode": node["id"]}]
    for cond in node["config"].get("conditions", []):
        ports["decision"].append(cond["port"])
    conns += [{"fromNode": node["id"], "port": p, "toNode": "bye"}
              for p in dict.fromkeys(ports[node["type"]])]
    defn = FlowDefinition.model_validate({"name": "t", "nodes": nodes, "connections": conns})
    found = validate_flow(
        defn, api_allowlist=allow or [], known_business_hours_ids={1},
        api_secret_known=(lambda name: name in secrets) if secrets is not None else None,
    )
    return {(p.node_id, p.field, p.code) for p in found}


def decision(*conditions: dict[str, Any]) -> dict[str, Any]:
    return n("d", "decision", conditions=list(conditions))


def gather(**config: Any) -> dict[str, Any]:
    return n("g", "gather", **{"message": "Enter it.", "saveToVariable": "v", **config})


def test_a_clean_logic_flow_has_no_problems() -> None:
    assert problems(decision(
        {"kind": "time", "operator": "open", "businessHoursId": 1, "port": "open"},
        {"kind": "caller", "operator": "in", "value": ["09876543210"], "port": "vip"},
        {"kind": "variable", "variable": "x", "operator": "regex", "value": r"^\d{4}$",
         "port": "four"},
    )) == set()
    assert problems(gather(inputType="date", minLength=8, maxLength=8)) == set()
    assert problems(n("api", "api", url="https://crm.example.in/c/{{ caller }}")) == set()


@pytest.mark.parametrize(
    ("condition", "field", "code"),
    [
        ({"kind": "time", "operator": "open", "businessHoursId": 5, "port": "a"},
         "config.conditions[0].businessHoursId", "unknown_business_hours"),
        ({"kind": "time", "operator": "closed", "port": "a"},
         "config.conditions[0].businessHoursId", "missing_business_hours"),
        ({"kind": "variable", "variable": "x", "operator": "regex", "value": r"(\d+)+$",
          "port": "a"}, "config.conditions[0].value", "bad_regex"),
        ({"kind": "any", "port": "a", "conditions": [
            {"kind": "caller", "operator": "regex", "value": "(a*)*b"}]},
         "config.conditions[0].conditions[0].value", "bad_regex"),
        ({"kind": "caller", "operator": "in", "value": ["+919876543210", "not a number"],
          "port": "a"}, "config.conditions[0].value[1]", "type_mismatch"),
        ({"kind": "caller", "operator": "prefix", "value": "abc", "port": "a"},
         "config.conditions[0].value", "type_mismatch"),
    ],
)
def test_decision_problems(condition: dict, field: str, code: str) -> None:
    assert ("d", field, code) in problems(decision(condition))


def test_numeric_compare_on_a_text_variable_from_a_gather() -> None:
    nodes = [n("w", "welcome"),
             gather(inputType="phone", maxLength=13, saveToVariable="alt"),
             decision({"kind": "variable", "variable": "alt", "operator": "gt", "value": 5,
                       "port": "a"}),
             n("bye", "hangup")]
    conns = [{"fromNode": "w", "port": "next", "toNode": "g"},
             {"fromNode": "g", "port": "valid", "toNode": "d"},
             {"fromNode": "d", "port": "a", "toNode": "bye"},
             {"fromNode": "d", "port": "default", "toNode": "bye"}]
    defn = FlowDefinition.model_validate({"name": "t", "nodes": nodes, "connections": conns})
    found = {(p.node_id, p.field, p.code) for p in validate_flow(defn, api_allowlist=[])}
    assert ("d", "config.conditions[0].operator", "type_mismatch") in found


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"inputType": "date", "maxLength": 6}, "config.maxLength"),
        ({"inputType": "phone", "maxLength": 6}, "config.maxLength"),
        ({"inputType": "date", "minLength": 8, "maxLength": 8,
          "validationRules": {"minValue": 1}}, "config.validationRules"),
        ({"inputType": "phone", "maxLength": 13, "validationRules": {"luhn": True}},
         "config.validationRules.luhn"),
        ({"inputType": "digits", "validationRules": {"pattern": "(1+)+2"}},
         "config.validationRules.pattern"),
        ({"inputType": "number", "maxLength": 20}, "config.maxLength"),
        ({"inputType": "amount", "finishOnKey": "*"}, "config.finishOnKey"),
    ],
)
def test_gather_type_mismatches(config: dict, field: str) -> None:
    found = problems(gather(**config))
    assert any(f == field and code in ("type_mismatch", "bad_regex") for _, f, code in found), (
        found
    )


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8080/x", "forbidden_host"),
        ("http://169.254.169.254/latest/meta-data/", "forbidden_host"),
        ("http://[::1]/x", "forbidden_host"),
        ("http://10.0.0.8/x", "forbidden_host"),
        ("http://localhost/x", "forbidden_host"),
        ("http://metadata.google.internal/computeMetadata/v1/", "forbidden_host"),
        ("https://{{ host }}/x", "templated_host"),
    ],
)
def test_api_hosts_refused_at_publish(url: str, code: str) -> None:
    assert ("api", "config.url", code) in problems(n("api", "api", url=url))


def test_allowlisted_hosts_publish_and_secrets_are_checked() -> None:
    assert problems(n("api", "api", url="http://10.0.0.8/x"), allow=["10.0.0.0/8"]) == set()
    assert problems(n("api", "api", url="http://crm.internal/x"), allow=["crm.internal"]) == set()
    node = n("api", "api", url="https://crm.example.in/x",
             secretHeaders={"Authorization": "CRM_TOKEN"})
    assert ("api", "config.secretHeaders.Authorization", "unknown_secret") in problems(
        node, secrets=set())
    assert problems(node, secrets={"CRM_TOKEN"}) == set()


def test_regex_risk() -> None:
    assert regex_risk(r"^\d{6}$") is None
    assert regex_risk(r"^(98|99)\d{8}$") is None
    assert regex_risk(r"(\d+)+$")
    # Known gap: overlapping alternatives under one repeat are not detected.
    assert regex_risk(r"(\d|\d\d)*x") is None
