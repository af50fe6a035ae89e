"""Which labelled outputs ("ports") each node type has, which must be connected, and fallbacks.

A port that is optional and unconnected falls back along `PortSpec.fallback` (another port of
the same node); when the chain ends without a connection the call ends politely (the engine
hangs up). Pure: no I/O, importable from workflow code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.flows.schema import Node

# Node types that talk to the caller or the carrier: a turn ends at them, so a loop through at
# least one of them cannot spin without a webhook in between.
INTERACTIVE_TYPES = frozenset(
    {"welcome", "play", "menu", "gather", "record", "queue", "transfer", "hangup"}
)
# Node types that run inside a turn without the caller (the walker executes them back to back).
SILENT_TYPES = frozenset({"decision", "api"})

NEXT = "next"
OPEN = "open"
CLOSED = "closed"
TIMEOUT = "timeout"
INVALID = "invalid"
MAX_RETRIES = "maxRetries"
FULL = "full"
COMPLETED = "completed"
NO_ANSWER = "noAnswer"
FAILED = "failed"
VALID = "valid"
DEFAULT = "default"
SUCCESS = "success"
ERROR = "error"

# Port names a decision condition may not take because they mean something else.
RESERVED_DECISION_PORTS = frozenset({DEFAULT})


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One output of a node."""

    name: str
    required: bool
    # Port tried next when this one is unconnected; None: the call ends.
    fallback: str | None = None
    description: str = ""


def ports_for(node: Node) -> tuple[PortSpec, ...]:
    """The output ports of a node, in a stable order, as its type and config define them."""
    cfg = node.config
    match node.type:
        case "welcome":
            if cfg.check_business_hours:
                return (
                    PortSpec(OPEN, True, description="business hours: open"),
                    PortSpec(CLOSED, True, description="business hours: closed or holiday"),
                )
            return (PortSpec(NEXT, True, description="after the greeting"),)
        case "play":
            return (PortSpec(NEXT, True, description="after the prompt"),)
        case "menu":
            digits = tuple(
                PortSpec(o.digit, True, description=f"caller pressed {o.digit}")
                for o in cfg.options
            )
            return (
                *digits,
                PortSpec(TIMEOUT, False, MAX_RETRIES, "retries used up by silence"),
                PortSpec(INVALID, False, MAX_RETRIES, "retries used up by wrong keys"),
                PortSpec(MAX_RETRIES, False, None, "retries used up (either cause)"),
            )
        case "hangup":
            return ()
        case "queue":
            return (
                PortSpec(NEXT, True, description="an agent was found for the caller"),
                PortSpec(TIMEOUT, False, None, "max wait reached"),
                PortSpec(FULL, False, TIMEOUT, "queue full on arrival"),
            )
        case "transfer":
            return (
                PortSpec(COMPLETED, False, None, "the bridged call ended normally"),
                PortSpec(NO_ANSWER, True, description="nobody answered after maxAttempts"),
                PortSpec(FAILED, False, NO_ANSWER, "the dial failed (busy, invalid, error)"),
            )
        case "record":
            return (PortSpec(NEXT, True, description="after the recording"),)
        case "decision":
            seen: dict[str, None] = {}
            for cond in cfg.conditions:
                seen.setdefault(cond.port, None)
            return (
                *(PortSpec(p, True, description="condition matched") for p in seen),
                PortSpec(DEFAULT, True, description="no condition matched"),
            )
        case "gather":
            return (
                PortSpec(VALID, True, description="input accepted"),
                PortSpec(INVALID, False, None, "retries used up by invalid input"),
                PortSpec(TIMEOUT, False, INVALID, "retries used up by silence"),
            )
        case "api":
            return (
                PortSpec(SUCCESS, True, description="2xx response"),
                PortSpec(ERROR, True, description="non-2xx, network error or bad response"),
                PortSpec(TIMEOUT, False, ERROR, "no response in time"),
            )
    raise ValueError(f"unknown node type {node.type!r}")


def port_names(node: Node) -> frozenset[str]:
    return frozenset(p.name for p in ports_for(node))


def required_ports(node: Node) -> tuple[str, ...]:
    return tuple(p.name for p in ports_for(node) if p.required)


def fallback_chain(node: Node, port: str) -> tuple[str, ...]:
    """`port` followed by the ports tried when it is unconnected, e.g. full → timeout."""
    specs = {p.name: p for p in ports_for(node)}
    chain: list[str] = [port]
    spec = specs.get(port)
    while spec is not None and spec.fallback is not None and spec.fallback not in chain:
        chain.append(spec.fallback)
        spec = specs.get(spec.fallback)
    return tuple(chain)


def is_interactive(node: Node) -> bool:
    """Does running this node end the turn (talk to the caller or the carrier)?"""
    if node.type == "welcome":
        # A welcome node that only checks business hours says nothing and passes straight on.
        return bool(node.config.message or node.config.audio_url)
    return node.type in INTERACTIVE_TYPES
