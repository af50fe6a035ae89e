"""The dashboard's flow model: API round trip, ports, DOT, and the canvas conversion."""

from __future__ import annotations

from streamlit_flow.elements import StreamlitFlowEdge

from dashboard.flow_model import FlowDoc, from_canvas, ports_of, to_canvas, to_dot

API_FLOW = {
    "name": "Sales",
    "entryNode": "welcome",
    "nodes": [
        {"id": "welcome", "type": "welcome", "name": "Hello", "position": {"x": 0, "y": 0},
         "config": {"message": "Hi"}},
        {"id": "menu", "type": "menu", "name": "Menu", "position": {"x": 0, "y": 150},
         "config": {"message": "Press 1", "options": [{"digit": "1"}]}},
        {"id": "bye", "type": "hangup", "name": "Bye", "position": {"x": 0, "y": 300},
         "config": {}},
    ],
    "connections": [
        {"fromNode": "welcome", "toNode": "menu", "port": "next"},
        {"fromNode": "menu", "toNode": "bye", "port": "1"},
    ],
}


def test_api_round_trip_keeps_ids_positions_and_config():
    doc = FlowDoc.from_api(API_FLOW)
    assert doc.to_api() == API_FLOW | {"nodes": [
        {**n, "position": {"x": float(n["position"]["x"]), "y": float(n["position"]["y"])}}
        for n in API_FLOW["nodes"]
    ]}


def test_ports_follow_the_node_config():
    assert [p.name for p in ports_of("welcome", {"checkBusinessHours": True})] == ["open",
                                                                                   "closed"]
    menu = [p.name for p in ports_of("menu", {"options": [{"digit": "1"}, {"digit": "9"}]})]
    assert menu == ["1", "9", "timeout", "invalid", "maxRetries"]
    decision = ports_of("decision", {"conditions": [{"port": "vip"}, {"port": "vip"}]})
    assert [p.name for p in decision] == ["vip", "default"]
    assert ports_of("hangup", {}) == ()
    doc = FlowDoc.from_api(API_FLOW)
    assert doc.free_ports("menu") == ["timeout", "invalid", "maxRetries"]


def test_dot_marks_problems_ports_and_entry():
    doc = FlowDoc.from_api(API_FLOW)
    dot = to_dot(doc, [{"nodeId": "menu", "code": "missing_port", "message": "port 1 unset"},
                       {"nodeId": None, "code": "x", "message": "flow-level"}])
    assert '"welcome" -> "menu" [label="next"]' in dot
    assert '"menu" -> "bye" [label="1"]' in dot
    menu_line = next(line for line in dot.splitlines() if line.strip().startswith('"menu" ['))
    assert 'fillcolor="#ffd6d6"' in menu_line and "port 1 unset" in menu_line
    welcome_line = next(line for line in dot.splitlines()
                        if line.strip().startswith('"welcome" ['))
    assert "peripheries=2" in welcome_line and "shape=house" in welcome_line
    assert "flow-level" in dot


def test_canvas_round_trip_is_lossless():
    doc = FlowDoc.from_api(API_FLOW)
    state = to_canvas(doc)
    assert [n.id for n in state.nodes] == ["welcome", "menu", "bye"]
    assert [(e.source, e.label, e.target) for e in state.edges] == [
        ("welcome", "next", "menu"), ("menu", "1", "bye")]
    back, unlabelled = from_canvas(doc, state)
    assert back == doc and unlabelled == []


def test_canvas_moves_deletes_and_new_edges_need_a_port():
    doc = FlowDoc.from_api(API_FLOW)
    state = to_canvas(doc)
    state.nodes[0].position = {"x": 56.0, "y": -10.0}  # dragged (the canvas is 1.4x wider)
    state.nodes = [n for n in state.nodes if n.id != "bye"]  # deleted on the canvas
    state.edges.append(StreamlitFlowEdge("reactflow__edge-menu-welcome", "menu", "welcome"))
    back, unlabelled = from_canvas(doc, state)
    assert (back.nodes[0].x, back.nodes[0].y) == (40.0, -10.0)
    assert [n.id for n in back.nodes] == ["welcome", "menu"]
    assert [(c.from_node, c.port, c.to_node) for c in back.connections] == [
        ("welcome", "next", "menu")]  # the edge to the deleted node went with it
    assert [(u.from_node, u.to_node) for u in unlabelled] == [("menu", "welcome")]
    fixed, unlabelled = from_canvas(doc, state, {"reactflow__edge-menu-welcome": "timeout"})
    assert unlabelled == []
    assert ("menu", "timeout", "welcome") in [(c.from_node, c.port, c.to_node)
                                              for c in fixed.connections]
