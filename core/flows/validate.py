"""Whole-flow validation: every problem at once, each naming the node and field it concerns."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from core.flows import ports as _ports
from core.flows import templates
from core.flows.logic_checks import logic_issues
from core.flows.schema import (
    ConditionExpr,
    DecisionNode,
    FlowDefinition,
    QueueNode,
    TransferNode,
    WelcomeNode,
    WireModel,
)
from core.http_guard import Allowlist


class Problem(WireModel):
    """One thing wrong with a flow. `code` is stable (clients may switch on it)."""

    node_id: str | None = None
    field: str | None = None
    code: str
    message: str


# Codes of problems a stored draft cannot hold (the tables' keys forbid them): a draft with
# any of these is refused at save time; all other problems only block publishing.
INVALID = "invalid"  # a field failed parsing (type, bounds, unknown field)
DUPLICATE_NODE_ID = "duplicate_node_id"
UNKNOWN_NODE = "unknown_node"
DUPLICATE_PORT = "duplicate_port"
STRUCTURAL_CODES = frozenset({INVALID, DUPLICATE_NODE_ID, UNKNOWN_NODE, DUPLICATE_PORT})

NO_ENTRY = "no_entry"
AMBIGUOUS_ENTRY = "ambiguous_entry"
UNKNOWN_ENTRY = "unknown_entry"
UNKNOWN_PORT = "unknown_port"
MISSING_PORT = "missing_port"
UNREACHABLE = "unreachable"
SILENT_LOOP = "silent_loop"
UNKNOWN_QUEUE = "unknown_queue"
UNKNOWN_AGENT = "unknown_agent"
UNKNOWN_BUSINESS_HOURS = "unknown_business_hours"
BAD_TEMPLATE = "bad_template"


def parse_flow(raw: Any) -> tuple[FlowDefinition | None, list[Problem]]:
    """Parse a flow document; on failure, every field error as a Problem naming its node."""
    try:
        return FlowDefinition.model_validate(raw), []
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, raw)


def problems_from_validation_error(exc: ValidationError, raw: Any) -> list[Problem]:
    return problems_from_errors(exc.errors(include_url=False, include_input=False), raw)


def problems_from_errors(errors: Sequence[Mapping[str, Any]], raw: Any) -> list[Problem]:
    """Pydantic error dicts (locations relative to the flow document) as Problems."""
    problems = []
    for err in errors:
        node_id, field = _locate(tuple(err["loc"]), raw)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field = "type" if field is None else f"{field}.type"
            message = "type must be one of " + ", ".join(_NODE_TYPES)
        problems.append(Problem(node_id=node_id, field=field, code=INVALID, message=message))
    return problems


_NODE_TYPES = (
    "welcome", "play", "menu", "hangup", "queue", "transfer", "record", "decision", "gather",
    "api",
)


def _locate(loc: tuple[int | str, ...], raw: Any) -> tuple[str | None, str | None]:
    """(node id, field path inside the node or document) for a pydantic error location."""

    def item(seq_name: str, index: Any) -> Mapping[str, Any]:
        seq = raw.get(seq_name) if isinstance(raw, Mapping) else None
        if isinstance(seq, list) and isinstance(index, int) and 0 <= index < len(seq):
            entry = seq[index]
            return entry if isinstance(entry, Mapping) else {}
        return {}

    def path(parts: tuple[int | str, ...]) -> str | None:
        out = ""
        for p in parts:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
        return out or None

    if len(loc) >= 2 and loc[0] == "nodes":
        node = item("nodes", loc[1])
        node_id = node.get("id") if isinstance(node.get("id"), str) else None
        rest = loc[2:]
        if rest and rest[0] in _NODE_TYPES:  # the discriminated union's tag
            rest = rest[1:]
        field = path(rest)
        if node_id is None:
            field = path(loc[:2] + tuple(rest))
        return node_id, field
    if len(loc) >= 2 and loc[0] == "connections":
        conn = item("connections", loc[1])
        from_node = conn.get("fromNode", conn.get("from_node"))
        return (from_node if isinstance(from_node, str) else None), path(loc)
    return None, path(loc)


def validate_flow(
    defn: FlowDefinition,
    *,
    known_queue_ids: Collection[int] | None = None,
    known_agent_ids: Collection[int] | None = None,
    known_business_hours_ids: Collection[int] | None = None,
    api_allowlist: Collection[str] | None = None,
    api_secret_known: Callable[[str], bool] | None = None,
) -> list[Problem]:
    """Every problem that stops `defn` from running; empty when it may be published.

    References to queues, agents and business hours are checked only for the kinds whose
    known-id set is given. API nodes' hosts are checked against `api_allowlist` and their
    secret names with `api_secret_known` (None: this server's settings).
    """
    problems: list[Problem] = []
    add = problems.append

    # Node ids.
    nodes: dict[str, Any] = {}
    for i, node in enumerate(defn.nodes):
        if node.id in nodes:
            add(Problem(node_id=node.id, field=f"nodes[{i}].id", code=DUPLICATE_NODE_ID,
                        message=f"node id {node.id!r} is used by more than one node"))
        else:
            nodes[node.id] = node

    # Entry.
    entry: str | None = None
    if defn.entry_node is not None:
        if defn.entry_node in nodes:
            entry = defn.entry_node
        else:
            add(Problem(field="entryNode", code=UNKNOWN_ENTRY,
                        message=f"entryNode {defn.entry_node!r} is not a node of this flow"))
    else:
        welcomes = [n.id for n in nodes.values() if n.type == "welcome"]
        if not welcomes:
            add(Problem(field="entryNode", code=NO_ENTRY,
                        message="the flow has no welcome node and no entryNode"))
        elif len(welcomes) > 1:
            add(Problem(field="entryNode", code=AMBIGUOUS_ENTRY,
                        message="several welcome nodes (" + ", ".join(welcomes)
                        + "): set entryNode to say where calls start"))
        else:
            entry = welcomes[0]

    # Connections.
    edges: dict[tuple[str, str], str] = {}
    for i, conn in enumerate(defn.connections):
        source = nodes.get(conn.from_node)
        ok = True
        if source is None:
            add(Problem(field=f"connections[{i}].fromNode", code=UNKNOWN_NODE,
                        message=f"connection from unknown node {conn.from_node!r}"))
            ok = False
        if conn.to_node not in nodes:
            add(Problem(node_id=conn.from_node if source is not None else None,
                        field=f"connections[{i}].toNode", code=UNKNOWN_NODE,
                        message=f"connection to unknown node {conn.to_node!r}"))
            ok = False
        if source is None:
            continue
        valid_ports = source.port_names()
        if conn.port not in valid_ports:
            allowed = ", ".join(p.name for p in source.ports()) or "none"
            add(Problem(node_id=source.id, field=f"connections[{i}].port", code=UNKNOWN_PORT,
                        message=f"a {source.type} node has no port {conn.port!r} "
                        f"(its ports: {allowed})"))
            ok = False
        key = (conn.from_node, conn.port)
        if key in edges:
            add(Problem(node_id=source.id, field=f"connections[{i}].port", code=DUPLICATE_PORT,
                        message=f"port {conn.port!r} of {source.id!r} is connected more than once"))
            continue
        if ok:
            edges[key] = conn.to_node

    # Required ports.
    for node in nodes.values():
        for spec in node.ports():
            if spec.required and (node.id, spec.name) not in edges:
                what = f" ({spec.description})" if spec.description else ""
                add(Problem(node_id=node.id, field=f"ports.{spec.name}", code=MISSING_PORT,
                            message=f"port {spec.name!r}{what} of {node.type} node "
                            f"{node.id!r} is not connected"))

    # Reachability.
    adjacency: dict[str, list[str]] = {n: [] for n in nodes}
    for (src, _port), dst in edges.items():
        adjacency[src].append(dst)
    if entry is not None:
        seen = {entry}
        todo = deque([entry])
        while todo:
            for nxt in adjacency[todo.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        for node_id in nodes:
            if node_id not in seen:
                add(Problem(node_id=node_id, code=UNREACHABLE,
                            message=f"node {node_id!r} cannot be reached from the entry node"))

    # Loops a call could spin in without ever waiting for the caller.
    silent = {n for n, node in nodes.items() if not _ports.is_interactive(node)}
    order = {n: i for i, n in enumerate(nodes)}
    for component in _cycles({n: [d for d in adjacency[n] if d in silent] for n in silent}):
        ids = sorted(component, key=order.__getitem__)
        add(Problem(node_id=ids[0], code=SILENT_LOOP,
                    message="these nodes loop without waiting for the caller and would spin "
                    "forever: " + " → ".join(ids)))

    # References.
    for node in nodes.values():
        for field, kind, ref in _references(node):
            known = {"queue": known_queue_ids, "agent": known_agent_ids,
                     "business_hours": known_business_hours_ids}[kind]
            if known is not None and ref not in known:
                code = {"queue": UNKNOWN_QUEUE, "agent": UNKNOWN_AGENT,
                        "business_hours": UNKNOWN_BUSINESS_HOURS}[kind]
                add(Problem(node_id=node.id, field=field, code=code,
                            message=f"{kind.replace('_', ' ')} {ref} does not exist"))

    # Prompt templates.
    for node in nodes.values():
        for field, source in node.template_strings():
            error = templates.check(source)
            if error is not None:
                add(Problem(node_id=node.id, field=field, code=BAD_TEMPLATE,
                            message=f"template does not parse: {error}"))

    # Logic nodes: regexes that could hang, type mismatches, API hosts and secrets.
    if api_allowlist is None or api_secret_known is None:
        from core.config import Settings, get_settings

        try:
            server: Settings | None = get_settings()
        except ValueError:  # no usable environment (a tool, not a server): strictest reading
            server = None
        if api_allowlist is None:
            api_allowlist = server.api_allowlist_entries if server is not None else []
        if api_secret_known is None and server is not None:
            api_secret_known = lambda name: server.api_secret(name) is not None  # noqa: E731
    for node_id, field, code, message in logic_issues(
        nodes, api_allowlist=Allowlist.parse(api_allowlist), secret_known=api_secret_known
    ):
        add(Problem(node_id=node_id, field=field, code=code, message=message))

    return problems


def structural_problems(problems: list[Problem]) -> list[Problem]:
    """The problems that stop a draft from being stored at all."""
    return [p for p in problems if p.code in STRUCTURAL_CODES]


def _references(node: Any) -> Iterator[tuple[str, str, int]]:
    """(field, kind, id) for every queue/agent/business-hours id a node names."""
    cfg = node.config
    if isinstance(node, WelcomeNode) and cfg.business_hours_id is not None:
        yield "config.businessHoursId", "business_hours", cfg.business_hours_id
    elif isinstance(node, QueueNode) and cfg.queue_id is not None:
        yield "config.queueId", "queue", cfg.queue_id
    elif isinstance(node, TransferNode):
        if cfg.agent_id is not None:
            yield "config.agentId", "agent", cfg.agent_id
        for i, agent in enumerate(cfg.agents or ()):
            yield f"config.agents[{i}]", "agent", agent
    elif isinstance(node, DecisionNode):
        for i, cond in enumerate(cfg.conditions):
            yield from _condition_refs(cond, f"config.conditions[{i}]")


def _condition_refs(cond: ConditionExpr, field: str) -> Iterator[tuple[str, str, int]]:
    if cond.business_hours_id is not None:
        yield f"{field}.businessHoursId", "business_hours", cond.business_hours_id
    for i, sub in enumerate(cond.conditions or ()):
        yield from _condition_refs(sub, f"{field}.conditions[{i}]")


def _cycles(graph: dict[str, list[str]]) -> list[set[str]]:
    """Strongly connected components that contain a cycle (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(graph[v])):
                w = graph[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                component: set[str] = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1 or v in graph[v]:
                    found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found
