"""The flow document: strict per-node parsing, ports per node type, the engine's helpers."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from core.flows import ports
from core.flows.samples import main_support_flow, sales_menu_flow, simple_greeting_flow
from core.flows.schema import NODE_TYPES, FlowDefinition
from core.flows.validate import parse_flow

# One minimal valid config per node type.
MINIMAL: dict[str, dict[str, Any]] = {
    "welcome": {},
    "play": {"message": "hi"},
    "menu": {"message": "press 1", "options": [{"digit": "1"}]},
    "hangup": {},
    "queue": {},
    "transfer": {},
    "record": {},
    "decision": {"conditions": [{"port": "vip", "variable": "tier", "operator": "equals",
                                 "value": "gold"}]},
    "gather": {"message": "enter", "saveToVariable": "account"},
    "api": {"url": "https://crm.example.in/lookup"},
}


def node(type_: str, node_id: str | None = None, **config: Any) -> dict[str, Any]:
    return {"id": node_id or type_, "type": type_, "config": {**MINIMAL[type_], **config}}


def one_node_flow(type_: str, **config: Any) -> FlowDefinition:
    return FlowDefinition.model_validate(
        {"name": "t", "entryNode": type_, "nodes": [node(type_, **config)]}
    )


def test_all_ten_types_parse_and_default_the_name_to_the_id() -> None:
    assert set(NODE_TYPES) == set(MINIMAL)
    for type_ in NODE_TYPES:
        flow = one_node_flow(type_)
        assert flow.node(type_).type == type_
        assert flow.node(type_).name == type_


@pytest.mark.parametrize(
    ("type_", "config", "expected"),
    [
        ("welcome", {}, ["next"]),
        ("welcome", {"checkBusinessHours": True}, ["open", "closed"]),
        ("play", {}, ["next"]),
        ("menu", {"options": [{"digit": "1"}, {"digit": "0"}, {"digit": "#"}]},
         ["1", "0", "#", "timeout", "invalid", "maxRetries"]),
        ("hangup", {}, []),
        ("queue", {}, ["next", "timeout", "full"]),
        ("transfer", {}, ["completed", "noAnswer", "failed"]),
        ("record", {}, ["next"]),
        ("decision", {"conditions": [
            {"port": "vip", "variable": "tier", "operator": "equals", "value": "gold"},
            {"port": "new", "variable": "orders", "operator": "lt", "value": 1},
            {"port": "vip", "kind": "caller", "operator": "prefix", "value": "+9180"},
        ]}, ["vip", "new", "default"]),
        ("gather", {}, ["valid", "invalid", "timeout"]),
        ("api", {}, ["success", "error", "timeout"]),
    ],
)
def test_ports_per_node_type(type_: str, config: dict[str, Any], expected: list[str]) -> None:
    n = one_node_flow(type_, **config).node(type_)
    assert [p.name for p in n.ports()] == expected


def test_required_ports() -> None:
    req = {t: ports.required_ports(one_node_flow(t).node(t)) for t in NODE_TYPES}
    assert req == {
        "welcome": ("next",), "play": ("next",), "menu": ("1",), "hangup": (),
        "queue": ("next",), "transfer": ("noAnswer",), "record": ("next",),
        "decision": ("vip", "default"), "gather": ("valid",), "api": ("success", "error"),
    }


def test_engine_helpers_entry_node_next_with_fallbacks() -> None:
    flow = main_support_flow()
    assert flow.entry().id == "welcome"
    assert flow.node("main_menu").type == "menu"
    assert flow.next("welcome", "open") == "main_menu"
    assert flow.next("main_menu", "0") == "main_menu"
    # Unconnected optional ports fall back along the port table.
    assert flow.connection("main_menu", "timeout") is None
    assert flow.next("main_menu", "timeout") == "goodbye"
    assert flow.next("tech_queue", "full") == "agents_busy"
    assert flow.next("billing_transfer", "failed") == "agents_busy"
    assert flow.next("billing_transfer", "completed") is None
    assert flow.next("hangup", "next") is None
    assert flow.next("nope", "next") is None
    assert flow.outgoing("welcome") == {"open": "main_menu", "closed": "voicemail"}
    with pytest.raises(KeyError):
        flow.node("nope")


def test_entry_defaults_to_the_single_welcome_node() -> None:
    flow = simple_greeting_flow()
    assert flow.entry_node is None and flow.entry().id == "welcome"
    two = FlowDefinition.model_validate(
        {"name": "t", "nodes": [node("welcome", "a"), node("welcome", "b")]}
    )
    assert two.entry_id() is None
    with pytest.raises(ValueError, match="no entry"):
        two.entry()


def test_camel_case_on_the_wire_and_snake_case_in_python() -> None:
    flow = one_node_flow("welcome", checkBusinessHours=True, audioUrl="https://x.in/a.mp3")
    cfg = flow.node("welcome").config
    assert cfg.check_business_hours is True and cfg.audio_url == "https://x.in/a.mp3"
    dumped = flow.to_json_dict()
    assert dumped["entryNode"] == "welcome"
    assert dumped["nodes"][0]["config"] == {
        "checkBusinessHours": True, "audioUrl": "https://x.in/a.mp3",
    }
    # populate_by_name: Python names work too.
    FlowDefinition(name="x", entry_node="a")


def test_canonical_json_is_stable_and_round_trips() -> None:
    for flow in (main_support_flow(), simple_greeting_flow(), sales_menu_flow()):
        again = FlowDefinition.model_validate_json(flow.canonical_json())
        assert again.canonical_json() == flow.canonical_json()
        assert again == flow


def test_menu_accepts_prompt_as_the_message_name() -> None:
    config = {"prompt": "press one", "options": [{"digit": "1"}]}
    raw = {"id": "m", "type": "menu", "config": config}
    flow = FlowDefinition.model_validate({"name": "t", "nodes": [raw]})
    assert flow.node("m").config.message == "press one"
    # Written back under the one canonical name.
    assert flow.to_json_dict()["nodes"][0]["config"]["message"] == "press one"


@pytest.mark.parametrize(
    ("type_", "config", "fragment"),
    [
        ("welcome", {"colour": "red"}, "Extra inputs are not permitted"),
        ("welcome", {"businessHoursId": 3}, "checkBusinessHours is false"),
        ("welcome", {"language": "English!"}, "String should match pattern"),
        ("play", {"message": None}, "needs a message or an audioUrl"),
        ("play", {"loop": 11}, "less than or equal to 10"),
        ("play", {"audioUrl": "file:///etc/passwd"}, "String should match pattern"),
        ("play", {"message": "x" * 2001}, "at most 2000 characters"),
        ("menu", {"options": []}, "at least 1 item"),
        ("menu", {"options": [{"digit": "1"}, {"digit": "1"}]}, "digits used twice: 1"),
        ("menu", {"options": [{"digit": "12"}]}, "Input should be"),
        ("menu", {"timeout": 0}, "greater than or equal to 1"),
        ("menu", {"maxRetries": 99}, "less than or equal to 10"),
        ("hangup", {"reason": "Bad Reason"}, "String should match pattern"),
        ("queue", {"maxWaitTime": 5}, "greater than or equal to 10"),
        ("queue", {"queueId": 0}, "greater than or equal to 1"),
        ("transfer", {"agentId": 1, "phoneNumber": "+919876543210"}, "only one transfer target"),
        ("transfer", {"agents": [1, 1]}, "agent twice"),
        ("transfer", {"phoneNumber": "09876543210"}, "String should match pattern"),
        ("transfer", {"routingStrategy": "random"}, "Input should be"),
        ("transfer", {"routingStrategy": "skills_based"}, "needs skills"),
        ("transfer", {"skills": {"billing": 6}}, "less than or equal to 5"),
        ("transfer", {"agentId": 2, "skills": {"billing": 1}}, "skills and team apply only"),
        ("record", {"maxLength": 0}, "greater than or equal to 1"),
        ("record", {"finishOnKey": "x"}, "Input should be"),
        ("record", {"saveToVariable": "1bad"}, "String should match pattern"),
        ("decision", {"conditions": []}, "at least 1 item"),
        ("decision", {"conditions": [{"port": "default", "variable": "a", "operator": "exists"}]},
         "reserved"),
        ("decision", {"conditions": [{"port": "p", "variable": "a", "operator": "nope",
                                      "value": 1}]}, "operator must be one of"),
        ("decision", {"conditions": [{"port": "p", "variable": "a", "operator": "regex",
                                      "value": "("}]}, "invalid regular expression"),
        ("decision", {"conditions": [{"port": "p", "variable": "a", "operator": "gt",
                                      "value": "x"}]}, "needs a number"),
        ("decision", {"conditions": [{"port": "p", "variable": "a", "operator": "in",
                                      "value": "x"}]}, "non-empty list"),
        ("decision", {"conditions": [{"port": "p", "kind": "time", "operator": "between",
                                      "value": ["9:00", "18:00"]}]}, "HH:MM"),
        ("decision", {"conditions": [{"port": "p", "kind": "all"}]}, "needs conditions"),
        ("gather", {"minLength": 5, "maxLength": 2}, "minLength is greater"),
        ("gather", {"inputType": "regex"}, "needs validationRules.pattern"),
        ("gather", {"validationRules": {"pattern": "[a-"}}, "invalid regular expression"),
        ("gather", {"saveToVariable": None}, "Input should be a valid string"),
        ("api", {"url": "ftp://x"}, "String should match pattern"),
        ("api", {"method": "GET", "body": {"a": 1}}, "takes no body"),
        ("api", {"timeout": 60}, "less than or equal to 10"),
        ("api", {"headers": {"Bad Header": "x"}}, "String should match pattern"),
    ],
)
def test_strict_configs_reject_bad_values(
    type_: str, config: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment):
        one_node_flow(type_, **config)


def test_parse_flow_reports_every_field_error_with_its_node() -> None:
    raw = main_support_flow().to_json_dict()
    raw = copy.deepcopy(raw)
    raw["nodes"][1]["config"]["timeout"] = 0  # main_menu
    raw["nodes"][3]["config"]["ringTimeout"] = 1  # billing_transfer
    raw["nodes"][4]["type"] = "teleport"  # tech_info
    raw["connections"][0]["port"] = "has space"
    raw["nodes"].append({"type": "play", "config": {"message": "no id"}})
    defn, problems = parse_flow(raw)
    assert defn is None
    found = {(p.node_id, p.field) for p in problems}
    assert ("main_menu", "config.timeout") in found
    assert ("billing_transfer", "config.ringTimeout") in found
    assert ("tech_info", "type") in found
    assert ("welcome", "connections[0].port") in found
    assert (None, "nodes[17].id") in found
    assert all(p.code == "invalid" for p in problems)
    teleport = next(p for p in problems if p.node_id == "tech_info")
    assert "welcome" in teleport.message and "api" in teleport.message


def test_limits_on_graph_size() -> None:
    with pytest.raises(ValidationError, match="at most 500 items"):
        FlowDefinition.model_validate(
            {"name": "big", "nodes": [node("hangup", f"n{i}") for i in range(501)]}
        )
    with pytest.raises(ValidationError, match="String should match pattern"):
        FlowDefinition.model_validate({"name": "x", "nodes": [node("hangup", "a" * 65)]})
    with pytest.raises(ValidationError):
        FlowDefinition.model_validate({"name": "", "nodes": []})


def test_frozen_versions_are_parsed_once_per_checksum():
    from core.flows.schema import parse_frozen

    definition = simple_greeting_flow().to_json_dict()
    a = parse_frozen(definition, "sha-a")
    assert parse_frozen(definition, "sha-a") is a  # shared, read-only
    assert parse_frozen(definition, "sha-b") is not a
    assert parse_frozen(definition, None) is not parse_frozen(definition, None)
    assert a.entry().id == parse_frozen(definition, None).entry().id
