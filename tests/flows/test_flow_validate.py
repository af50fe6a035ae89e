"""validate_flow: every kind of problem is found, all at once, naming node and field."""

from __future__ import annotations

import copy
from typing import Any

from core.flows.samples import main_support_flow, sales_menu_flow, simple_greeting_flow
from core.flows.schema import FlowDefinition
from core.flows.validate import STRUCTURAL_CODES, Problem, structural_problems, validate_flow


def flow(nodes: list[dict[str, Any]], connections: list[tuple[str, str, str]],
         entry: str | None = None) -> FlowDefinition:
    return FlowDefinition.model_validate({
        "name": "t",
        "entryNode": entry,
        "nodes": nodes,
        "connections": [{"fromNode": f, "port": p, "toNode": t} for f, p, t in connections],
    })


def n(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "config": config}


WELCOME = n("w", "welcome", message="hi")
BYE = n("bye", "hangup")


def codes(problems: list[Problem]) -> list[tuple[str, str | None, str | None]]:
    return [(p.code, p.node_id, p.field) for p in problems]


def test_the_seeded_flows_are_valid_even_with_empty_reference_sets() -> None:
    for f in (main_support_flow(), simple_greeting_flow(), sales_menu_flow()):
        assert validate_flow(f) == []
        assert validate_flow(f, known_queue_ids=set(), known_agent_ids=set(),
                             known_business_hours_ids=set()) == []


def test_production_flow_counts_17_nodes_and_23_connections() -> None:
    f = main_support_flow()
    assert (len(f.nodes), len(f.connections)) == (17, 23)
    types = [x.type for x in f.nodes]
    assert types.count("transfer") == 4 and types.count("queue") == 2
    assert f.node("welcome").config.check_business_hours is True
    assert all(x.config.record for x in f.nodes if x.type == "transfer")
    menu = f.node("main_menu")
    assert [o.digit for o in menu.config.options] == ["1", "2", "3", "9", "0"]
    assert f.next("main_menu", "0") == "main_menu"
    assert f.next("welcome", "closed") == "voicemail"
    assert f.next("voicemail", "next") == "thank_you"
    assert f.next("thank_you", "next") == "hangup"
    path = ["main_menu", "tech_info", "tech_queue", "tech_transfer"]
    assert [f.next("welcome", "open"), f.next("main_menu", "2"), f.next("tech_info", "next"),
            f.next("tech_queue", "next")] == path


def test_duplicate_node_ids() -> None:
    f = flow([WELCOME, n("w", "play", message="x"), BYE], [("w", "next", "bye")])
    assert ("duplicate_node_id", "w", "nodes[1].id") in codes(validate_flow(f))


def test_no_entry_ambiguous_entry_and_unknown_entry() -> None:
    assert codes(validate_flow(flow([BYE], []))) == [("no_entry", None, "entryNode")]
    two = flow([WELCOME, n("w2", "welcome"), BYE], [("w", "next", "bye"), ("w2", "next", "bye")])
    assert codes(validate_flow(two)) == [("ambiguous_entry", None, "entryNode")]
    assert validate_flow(flow(two.model_dump()["nodes"], [("w", "next", "bye"),
                                                          ("w2", "next", "bye")], entry="w")) == [
        Problem(node_id="w2", code="unreachable",
                message="node 'w2' cannot be reached from the entry node")
    ]
    bad = flow([WELCOME, BYE], [("w", "next", "bye")], entry="ghost")
    assert ("unknown_entry", None, "entryNode") in codes(validate_flow(bad))


def test_any_node_may_be_the_entry_when_named() -> None:
    f = flow([n("p", "play", message="x"), BYE], [("p", "next", "bye")], entry="p")
    assert validate_flow(f) == []


def test_connections_to_and_from_unknown_nodes() -> None:
    f = flow([WELCOME, BYE], [("w", "next", "bye"), ("ghost", "next", "bye"),
                              ("w", "next", "ghost")])
    got = codes(validate_flow(f))
    assert ("unknown_node", None, "connections[1].fromNode") in got
    assert ("unknown_node", "w", "connections[2].toNode") in got


def test_unknown_port_for_the_node_type() -> None:
    f = flow([WELCOME, BYE], [("w", "next", "bye"), ("w", "open", "bye"), ("bye", "next", "w")])
    got = validate_flow(f)
    assert ("unknown_port", "w", "connections[1].port") in codes(got)
    assert ("unknown_port", "bye", "connections[2].port") in codes(got)
    assert "its ports: next" in got[0].message


def test_two_connections_on_one_port() -> None:
    f = flow([WELCOME, BYE, n("bye2", "hangup")], [("w", "next", "bye"), ("w", "next", "bye2")])
    assert ("duplicate_port", "w", "connections[1].port") in codes(validate_flow(f))


def test_required_ports_unconnected() -> None:
    menu = n("m", "menu", message="m", options=[{"digit": "1"}, {"digit": "2"}])
    f = flow([WELCOME, menu, BYE], [("w", "next", "m"), ("m", "1", "bye")])
    assert codes(validate_flow(f)) == [("missing_port", "m", "ports.2")]
    hours = n("w", "welcome", checkBusinessHours=True)
    f = flow([hours, BYE], [("w", "open", "bye")])
    assert codes(validate_flow(f)) == [("missing_port", "w", "ports.closed")]


def test_unreachable_nodes() -> None:
    f = flow([WELCOME, BYE, n("lost", "play", message="x")],
             [("w", "next", "bye"), ("lost", "next", "bye")])
    assert codes(validate_flow(f)) == [("unreachable", "lost", None)]


def test_unknown_queue_agent_and_business_hours_references() -> None:
    f = flow(
        [n("w", "welcome", checkBusinessHours=True, businessHoursId=7),
         n("q", "queue", queueId=3), n("t", "transfer", agents=[1, 2]),
         n("t2", "transfer", agentId=9),
         n("d", "decision", conditions=[{"port": "open", "kind": "time", "operator": "open",
                                         "businessHoursId": 8}]),
         BYE],
        [("w", "open", "q"), ("w", "closed", "d"), ("q", "next", "t"), ("t", "noAnswer", "t2"),
         ("t2", "noAnswer", "bye"), ("d", "open", "bye"), ("d", "default", "bye")],
    )
    assert validate_flow(f) == []  # nothing known: references not checked
    got = codes(validate_flow(f, known_queue_ids={1}, known_agent_ids={1},
                              known_business_hours_ids={7}))
    assert got == [
        ("unknown_queue", "q", "config.queueId"),
        ("unknown_agent", "t", "config.agents[1]"),
        ("unknown_agent", "t2", "config.agentId"),
        ("unknown_business_hours", "d", "config.conditions[0].businessHoursId"),
    ]
    # Only the given kinds are checked.
    assert codes(validate_flow(f, known_queue_ids={3})) == []


def test_loop_without_caller_interaction_is_found() -> None:
    d1 = n("d1", "decision", conditions=[{"port": "again", "variable": "x", "operator": "exists"}])
    api = n("api", "api", url="https://crm.example.in/x")
    f = flow([WELCOME, d1, api, BYE],
             [("w", "next", "d1"), ("d1", "again", "api"), ("d1", "default", "bye"),
              ("api", "success", "d1"), ("api", "error", "bye")])
    got = validate_flow(f)
    assert codes(got) == [("silent_loop", "d1", None)]
    assert "d1 → api" in got[0].message
    # A self-loop on a silent node is a loop too.
    d2 = n("d2", "decision", conditions=[{"port": "me", "variable": "x", "operator": "exists"}])
    f = flow([WELCOME, d2, BYE], [("w", "next", "d2"), ("d2", "me", "d2"),
                                 ("d2", "default", "bye")])
    assert codes(validate_flow(f)) == [("silent_loop", "d2", None)]


def test_loops_through_the_caller_are_fine() -> None:
    menu = n("m", "menu", message="m", options=[{"digit": "0"}, {"digit": "1"}])
    d = n("d", "decision", conditions=[{"port": "back", "variable": "x", "operator": "exists"}])
    f = flow([WELCOME, menu, d, BYE],
             [("w", "next", "m"), ("m", "0", "m"), ("m", "1", "d"), ("d", "back", "m"),
              ("d", "default", "bye")])
    assert validate_flow(f) == []


def test_a_welcome_node_that_says_nothing_is_not_an_interaction() -> None:
    w = n("w", "welcome", checkBusinessHours=True)
    d = n("d", "decision", conditions=[{"port": "x", "variable": "x", "operator": "exists"}])
    f = flow([w, d, BYE], [("w", "open", "d"), ("w", "closed", "bye"), ("d", "x", "w"),
                           ("d", "default", "bye")])
    assert codes(validate_flow(f)) == [("silent_loop", "w", None)]


def test_templates_that_do_not_parse() -> None:
    f = flow(
        [n("w", "welcome", message="Hello {{ name "),
         n("m", "menu", message="ok {{ x }}", invalidMessage="{% for i in x %}{% endfor %}",
           options=[{"digit": "1"}]),
         n("a", "api", url="https://x.in/{{ id", method="POST", headers={"X-Id": "{{ }}"},
           body={"q": ["{{ a.b }}", "{{ c | nosuch }}"]}),
         BYE],
        [("w", "next", "m"), ("m", "1", "a"), ("a", "success", "bye"), ("a", "error", "bye")],
    )
    got = codes(validate_flow(f))
    assert got == [
        ("bad_template", "w", "config.message"),
        ("bad_template", "m", "config.invalidMessage"),
        ("bad_template", "a", "config.url"),
        ("bad_template", "a", "config.headers.X-Id"),
        ("bad_template", "a", "config.body.q[1]"),
    ]


def test_every_problem_is_returned_not_just_the_first() -> None:
    raw = copy.deepcopy(main_support_flow().to_json_dict())
    raw["connections"] = [c for c in raw["connections"]
                          if not (c["fromNode"] == "main_menu" and c["port"] == "3")]
    raw["connections"].append({"fromNode": "hangup", "port": "next", "toNode": "welcome"})
    raw["connections"].append({"fromNode": "welcome", "port": "open", "toNode": "goodbye"})
    raw["nodes"][0]["config"]["message"] = "{{ broken"
    f = FlowDefinition.model_validate(raw)
    got = {p.code for p in validate_flow(f, known_queue_ids=set())}
    assert got == {"missing_port", "unreachable", "unknown_port", "duplicate_port",
                   "bad_template"}
    structural = structural_problems(validate_flow(f))
    assert {p.code for p in structural} == {"duplicate_port"}
    assert STRUCTURAL_CODES >= {p.code for p in structural}


def test_problem_is_camel_case_on_the_wire() -> None:
    p = Problem(node_id="a", field="config.x", code="c", message="m")
    assert p.model_dump() == {"nodeId": "a", "field": "config.x", "code": "c", "message": "m"}
