"""Routing strategies: pure functions that rank the agents who may take a call, best first.

A strategy never reserves anyone: the ranking goes to one Lua script (core.routing.scripts)
that reserves the first agent of the list who is still free at that instant, atomically. So a
ranking computed from a snapshot a few milliseconds old is safe: it can only cost a place in the
order, never a double booking.

- sequential: fixed order (the transfer node's agent list, else each agent's `sequence`, then id).
- round_robin: the fixed order rotated to start after the last agent this queue/node got
  (the cursor lives in Redis and is moved by the reserving script).
- longest_idle: longest since the last call ended (or since becoming available), first.
- skills_based: required skills met; best match first (sum of proficiency above the minimum,
  plus optional skills held), ties by longest idle.
- load_balanced: fewest active calls, then fewest calls handled today, then longest idle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.routing.model import AgentSnapshot, Requirements

STRATEGIES = ("sequential", "round_robin", "longest_idle", "skills_based", "load_balanced")


def eligible(
    agents: Iterable[AgentSnapshot], req: Requirements, now_ms: int
) -> list[AgentSnapshot]:
    """Agents who meet the requirements and could take a call now."""
    return [a for a in agents if a.free(now_ms) and req.admits(a)]


def _fixed_order(agents: list[AgentSnapshot], req: Requirements) -> list[AgentSnapshot]:
    if req.agent_ids is not None:
        place = {agent_id: i for i, agent_id in enumerate(req.agent_ids)}
        return sorted(agents, key=lambda a: (place.get(a.id, len(place)), a.id))
    return sorted(agents, key=lambda a: (a.sequence, a.id))


def sequential(
    agents: list[AgentSnapshot], req: Requirements, *, cursor: int | None = None, day: str = ""
) -> list[AgentSnapshot]:
    return _fixed_order(agents, req)


def round_robin(
    agents: list[AgentSnapshot], req: Requirements, *, cursor: int | None = None, day: str = ""
) -> list[AgentSnapshot]:
    """Fixed order rotated to start just after `cursor` (the agent id served last)."""
    ordered = _fixed_order(agents, req)
    if cursor is None or not ordered:
        return ordered
    # Place of the last-served agent in the full fixed order, even if it is busy now.
    keys = [(_order_key(a, req)) for a in ordered]
    last = _cursor_key(cursor, req)
    split = next((i for i, k in enumerate(keys) if k > last), len(ordered))
    return ordered[split:] + ordered[:split]


def _order_key(agent: AgentSnapshot, req: Requirements) -> tuple[int, int]:
    if req.agent_ids is not None:
        ids = list(req.agent_ids)
        return (ids.index(agent.id) if agent.id in ids else len(ids), agent.id)
    return (agent.sequence, agent.id)


def _cursor_key(cursor: int, req: Requirements) -> tuple[int, int]:
    # The cursor stores "sequence:id" packed by the caller; see rank() below.
    return divmod(cursor, 1 << 31) if req.agent_ids is None else _list_key(cursor, req)


def _list_key(cursor: int, req: Requirements) -> tuple[int, int]:
    agent_id = cursor % (1 << 31)
    ids = list(req.agent_ids or ())
    return (ids.index(agent_id) if agent_id in ids else -1, agent_id)


def longest_idle(
    agents: list[AgentSnapshot], req: Requirements, *, cursor: int | None = None, day: str = ""
) -> list[AgentSnapshot]:
    return sorted(agents, key=lambda a: (a.idle_since_ms(), a.id))


def match_score(agent: AgentSnapshot, req: Requirements) -> int:
    """How well an agent fits: proficiency above each required minimum, plus optional skills."""
    score = sum(agent.skills.get(s, 0) - lvl for s, lvl in req.skills.items())
    score += sum(
        min(agent.skills.get(s, 0), 5)
        for s, lvl in req.optional.items()
        if agent.skills.get(s, 0) >= lvl
    )
    return score


def skills_based(
    agents: list[AgentSnapshot], req: Requirements, *, cursor: int | None = None, day: str = ""
) -> list[AgentSnapshot]:
    return sorted(agents, key=lambda a: (-match_score(a, req), a.idle_since_ms(), a.id))


def load_balanced(
    agents: list[AgentSnapshot], req: Requirements, *, cursor: int | None = None, day: str = ""
) -> list[AgentSnapshot]:
    return sorted(
        agents,
        key=lambda a: (max(a.active, len(a.calls)), a.handled_on(day), a.idle_since_ms(), a.id),
    )


Strategy = Callable[..., list[AgentSnapshot]]
BY_NAME: dict[str, Strategy] = {
    "sequential": sequential,
    "round_robin": round_robin,
    "longest_idle": longest_idle,
    "skills_based": skills_based,
    "load_balanced": load_balanced,
}


def cursor_value(agent: AgentSnapshot) -> int:
    """What the round-robin cursor stores for `agent`: its fixed-order key, packed."""
    return (agent.sequence << 31) | agent.id


def rank(
    strategy: str,
    agents: Iterable[AgentSnapshot],
    req: Requirements,
    *,
    now_ms: int,
    cursor: int | None = None,
    day: str = "",
) -> list[AgentSnapshot]:
    """The agents who may take the call now, best first, by `strategy`."""
    try:
        fn = BY_NAME[strategy]
    except KeyError:
        raise ValueError(f"unknown routing strategy {strategy!r}") from None
    return fn(eligible(agents, req, now_ms), req, cursor=cursor, day=day)
