"""The dashboard's own model of a flow (as the flows API sends it), its ports, its graph as
Graphviz DOT, and the ONE place where it converts to and from streamlit-flow-component state.

The dashboard talks to the API only, so it keeps these small types instead of importing the
server's schema; the API stays the judge of validity (drafts are validated on save/publish).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streamlit_flow.elements import StreamlitFlowEdge, StreamlitFlowNode
from streamlit_flow.state import StreamlitFlowState

NODE_TYPES = (
    "welcome", "play", "menu", "gather", "decision", "api", "queue", "transfer", "record",
    "hangup",
)
# Shape and fill of each node type in the read-only graph.
NODE_STYLE: dict[str, tuple[str, str]] = {
    "welcome": ("house", "#dff3e4"),
    "play": ("box", "#eef2f7"),
    "menu": ("diamond", "#fff4d6"),
    "gather": ("parallelogram", "#fff4d6"),
    "decision": ("hexagon", "#f3e8ff"),
    "api": ("component", "#e6f0ff"),
    "queue": ("cylinder", "#e6f0ff"),
    "transfer": ("cds", "#e6f0ff"),
    "record": ("note", "#eef2f7"),
    "hangup": ("octagon", "#f2f2f2"),
}
PROBLEM_FILL = "#ffd6d6"
# A minimal valid config per type: what "add node" starts from.
CONFIG_TEMPLATES: dict[str, dict[str, Any]] = {
    "welcome": {"message": "Welcome."},
    "play": {"message": "Please listen carefully."},
    "menu": {"message": "For sales, press 1.", "options": [{"digit": "1", "label": "Sales"}]},
    "gather": {"message": "Please enter your number followed by hash.",
               "saveToVariable": "entered"},
    "decision": {"conditions": [{"kind": "variable", "variable": "entered",
                                 "operator": "exists", "port": "known"}]},
    "api": {"url": "https://example.in/lookup", "method": "GET"},
    "queue": {},
    "transfer": {},
    "record": {"message": "Please leave a message after the beep."},
    "hangup": {"message": "Goodbye."},
}


@dataclass(frozen=True)
class Port:
    name: str
    required: bool
    description: str


def ports_of(node_type: str, config: Mapping[str, Any]) -> tuple[Port, ...]:
    """The labelled outputs of a node (mirrors the API's port rules; the API has the last word)."""
    match node_type:
        case "welcome":
            if config.get("checkBusinessHours"):
                return (Port("open", True, "business hours: open"),
                        Port("closed", True, "closed or holiday"))
            return (Port("next", True, "after the greeting"),)
        case "play" | "record":
            return (Port("next", True, "afterwards"),)
        case "menu":
            digits = [str(o.get("digit")) for o in config.get("options") or [] if o.get("digit")]
            return (
                *(Port(d, True, f"caller pressed {d}") for d in digits),
                Port("timeout", False, "silence used up the retries"),
                Port("invalid", False, "wrong keys used up the retries"),
                Port("maxRetries", False, "retries used up"),
            )
        case "queue":
            return (Port("next", True, "an agent was found"),
                    Port("timeout", False, "max wait reached"),
                    Port("full", False, "queue full on arrival"))
        case "transfer":
            return (Port("completed", False, "the bridged call ended"),
                    Port("noAnswer", True, "nobody answered"),
                    Port("failed", False, "the dial failed"))
        case "decision":
            seen: list[str] = []
            for cond in config.get("conditions") or []:
                port = str(cond.get("port") or "")
                if port and port not in seen:
                    seen.append(port)
            return (*(Port(p, True, "condition matched") for p in seen),
                    Port("default", True, "no condition matched"))
        case "gather":
            return (Port("valid", True, "input accepted"),
                    Port("invalid", False, "invalid input"),
                    Port("timeout", False, "silence"))
        case "api":
            return (Port("success", True, "2xx response"),
                    Port("error", True, "error response"),
                    Port("timeout", False, "no response in time"))
    return ()


@dataclass
class FlowNode:
    id: str
    type: str
    name: str
    x: float = 0.0
    y: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def ports(self) -> tuple[Port, ...]:
        return ports_of(self.type, self.config)

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "name": self.name,
                "position": {"x": round(self.x, 1), "y": round(self.y, 1)},
                "config": self.config}


@dataclass(frozen=True)
class FlowConnection:
    from_node: str
    port: str
    to_node: str

    def to_api(self) -> dict[str, str]:
        return {"fromNode": self.from_node, "toNode": self.to_node, "port": self.port}


@dataclass
class FlowDoc:
    """A flow draft as the dashboard edits it."""

    name: str
    description: str | None = None
    entry_node: str | None = None
    nodes: list[FlowNode] = field(default_factory=list)
    connections: list[FlowConnection] = field(default_factory=list)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> FlowDoc:
        nodes = [
            FlowNode(
                id=str(n["id"]),
                type=str(n.get("type")),
                name=str(n.get("name") or n["id"]),
                x=float((n.get("position") or {}).get("x", 0.0)),
                y=float((n.get("position") or {}).get("y", 0.0)),
                config=dict(n.get("config") or {}),
            )
            for n in body.get("nodes") or []
        ]
        connections = [
            FlowConnection(str(c["fromNode"]), str(c["port"]), str(c["toNode"]))
            for c in body.get("connections") or []
        ]
        return cls(
            name=str(body.get("name") or ""),
            description=body.get("description"),
            entry_node=body.get("entryNode"),
            nodes=nodes,
            connections=connections,
        )

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "nodes": [n.to_api() for n in self.nodes],
            "connections": [c.to_api() for c in self.connections],
        }
        if self.description:
            out["description"] = self.description
        if self.entry_node and any(n.id == self.entry_node for n in self.nodes):
            out["entryNode"] = self.entry_node
        return out

    def node(self, node_id: str) -> FlowNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def free_ports(self, node_id: str) -> list[str]:
        node = self.node(node_id)
        if node is None:
            return []
        used = {c.port for c in self.connections if c.from_node == node_id}
        return [p.name for p in node.ports() if p.name not in used]

    def with_node(self, node: FlowNode) -> FlowDoc:
        """This flow with `node` added, or replacing the node with the same id."""
        nodes = [node if n.id == node.id else n for n in self.nodes]
        if not any(n.id == node.id for n in self.nodes):
            nodes.append(node)
        return replace(self, nodes=nodes)


# --- the read-only graph ------------------------------------------------------------------


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def to_dot(doc: FlowDoc, problems: Iterable[Mapping[str, Any]] = ()) -> str:
    """Graphviz DOT of the flow: node types as shapes, ports on edges, problems in red."""
    by_node: dict[str, list[str]] = {}
    flow_level: list[str] = []
    for p in problems:
        target = by_node.setdefault(str(p["nodeId"]), []) if p.get("nodeId") else flow_level
        target.append(str(p.get("message", p.get("code", "problem"))))
    entry = doc.entry_node or next((n.id for n in doc.nodes if n.type == "welcome"), None)
    lines = [
        "digraph flow {",
        '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.4, ranksep=0.5];',
        '  node [fontname="Helvetica", fontsize=11, style=filled];',
        '  edge [fontname="Helvetica", fontsize=9, color="#6b7280"];',
    ]
    if flow_level:
        lines.append(f"  label={_quote('⚠ ' + '; '.join(flow_level))}; labelloc=t; fontcolor=red;")
    known = {n.id for n in doc.nodes}
    for n in doc.nodes:
        shape, fill = NODE_STYLE.get(n.type, ("box", "#ffffff"))
        label = f"{n.name}\n[{n.type}]"
        attrs = [f"label={_quote(label)}", f"shape={shape}", f'fillcolor="{fill}"']
        if n.id in by_node:
            text = label + "\n⚠ " + "\n⚠ ".join(by_node[n.id])
            attrs = [f"label={_quote(text)}", f"shape={shape}", f'fillcolor="{PROBLEM_FILL}"',
                     'color="red"', "penwidth=2", f"tooltip={_quote('; '.join(by_node[n.id]))}"]
        if n.id == entry:
            attrs.append("peripheries=2")
        lines.append(f"  {_quote(n.id)} [{', '.join(attrs)}];")
    for c in doc.connections:
        style = "" if c.to_node in known else ', color="red", style=dashed'
        lines.append(
            f"  {_quote(c.from_node)} -> {_quote(c.to_node)} [label={_quote(c.port)}{style}];"
        )
    lines.append("}")
    return "\n".join(lines)


# --- streamlit-flow-component: the one conversion ---------------------------------------

# The canvas draws nodes wider than the graph's positions assume: spread them sideways.
CANVAS_X_SCALE = 1.4


def _edge_id(c: FlowConnection) -> str:
    return f"{c.from_node}|{c.port}|{c.to_node}"


def _content(node: FlowNode) -> str:
    return f"**{node.name}**  \n`{node.type}` · {node.id}"


def to_canvas(doc: FlowDoc, problems: Iterable[Mapping[str, Any]] = ()) -> StreamlitFlowState:
    """The flow as canvas nodes (our ids, our positions) and edges labelled with their port."""
    bad = {str(p["nodeId"]) for p in problems if p.get("nodeId")}
    nodes = []
    for n in doc.nodes:
        _, fill = NODE_STYLE.get(n.type, ("box", "#ffffff"))
        style = {"background": PROBLEM_FILL if n.id in bad else fill,
                 "border": "2px solid #d64545" if n.id in bad else "1px solid #9ca3af",
                 "width": 190}
        nodes.append(
            StreamlitFlowNode(
                id=n.id,
                pos=(n.x * CANVAS_X_SCALE, n.y),
                data={"content": _content(n), "ivrType": n.type},
                node_type="output" if n.type == "hangup" else
                ("input" if n.type == "welcome" else "default"),
                source_position="bottom",
                target_position="top",
                selectable=True,
                connectable=True,
                deletable=True,
                style=style,
            )
        )
    edges = [
        StreamlitFlowEdge(
            id=_edge_id(c),
            source=c.from_node,
            target=c.to_node,
            label=c.port,
            label_show_bg=True,
            marker_end={"type": "arrowclosed"},
            deletable=True,
            focusable=True,
        )
        for c in doc.connections
    ]
    return StreamlitFlowState(nodes=nodes, edges=edges)


@dataclass(frozen=True)
class UnlabelledEdge:
    """An edge drawn on the canvas that does not say which port it leaves by yet."""

    edge_id: str
    from_node: str
    to_node: str


def from_canvas(
    doc: FlowDoc, state: StreamlitFlowState, ports: Mapping[str, str] | None = None
) -> tuple[FlowDoc, list[UnlabelledEdge]]:
    """Apply the canvas to the flow: positions, deleted nodes, and edges (their labels are ports).

    Node types, names and configs stay ours (the canvas only moves, connects and deletes);
    `ports` gives a port for edges drawn on the canvas (edge id → port). Edges still without
    a port are returned so the editor can ask for one; they are not put in the flow.
    """
    ports = ports or {}
    on_canvas = {n.id: n for n in state.nodes}
    nodes = [
        replace(n, x=round(float(on_canvas[n.id].position["x"]) / CANVAS_X_SCALE, 1),
                y=round(float(on_canvas[n.id].position["y"]), 1))
        for n in doc.nodes
        if n.id in on_canvas
    ]
    kept = {n.id for n in nodes}
    connections: list[FlowConnection] = []
    unlabelled: list[UnlabelledEdge] = []
    seen: set[tuple[str, str]] = set()
    for e in state.edges:
        if e.source not in kept or e.target not in kept:
            continue
        port = (e.label or ports.get(e.id) or "").strip()
        if not port:
            unlabelled.append(UnlabelledEdge(e.id, e.source, e.target))
            continue
        if (e.source, port) in seen:
            continue  # a port leads to one node; the first edge wins
        seen.add((e.source, port))
        connections.append(FlowConnection(e.source, port, e.target))
    entry = doc.entry_node if doc.entry_node in kept else None
    return replace(doc, nodes=nodes, connections=connections, entry_node=entry), unlabelled
