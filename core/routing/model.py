"""Live routing state as plain values: what strategies rank and what the API shows.

The live state is kept in Redis (core.routing.store) and changed only by the Lua scripts in
core.routing.scripts; these dataclasses are read-only snapshots of it. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("offline", "available", "reserved", "on_call", "wrap_up", "break")
# What an agent (or a supervisor) may set; the others follow from calls and leases.
PRESENCES = ("offline", "available", "break")


@dataclass(frozen=True)
class AgentSnapshot:
    """One agent as the router sees it at one instant (times in ms since the epoch)."""

    id: int
    status: str = "offline"
    presence: str = "offline"
    phone: str = ""
    name: str = ""
    team: str | None = None
    skills: dict[str, int] = field(default_factory=dict)
    sequence: int = 0
    max_calls: int = 1
    active: int = 0  # reservations and calls holding a lease
    wrap_s: int = 0
    wrap_until_ms: int = 0
    last_end_ms: int = 0  # when the agent's last call ended (0: never)
    available_since_ms: int = 0  # when the agent last became available (idle fallback)
    handled_today: int = 0
    handled_day: str = ""
    version: int = 0
    changed_at_ms: int = 0
    calls: dict[str, tuple[int, str]] = field(default_factory=dict)  # lease -> (expiry, r|c)

    def free(self, now_ms: int) -> bool:
        """Could take one more call right now (the Lua reservation re-checks this atomically)."""
        live = sum(1 for expiry, _ in self.calls.values() if expiry > now_ms)
        return (
            self.presence == "available" and live < self.max_calls and self.wrap_until_ms <= now_ms
        )

    def idle_since_ms(self) -> int:
        return max(self.last_end_ms, self.available_since_ms)

    def handled_on(self, day: str) -> int:
        return self.handled_today if self.handled_day == day else 0

    @classmethod
    def from_redis(cls, agent_id: int, raw: dict[str, str], calls: dict[str, str]) -> AgentSnapshot:
        def num(name: str, default: int = 0) -> int:
            try:
                return int(float(raw.get(name, default)))
            except (TypeError, ValueError):
                return default

        try:
            skills = {str(k): int(v) for k, v in json.loads(raw.get("skills") or "{}").items()}
        except (ValueError, TypeError, AttributeError):
            skills = {}
        leases: dict[str, tuple[int, str]] = {}
        for lease, value in calls.items():
            expiry, _, kind = value.partition("|")
            try:
                leases[lease] = (int(expiry), kind or "r")
            except ValueError:
                continue
        return cls(
            id=agent_id,
            status=raw.get("status", "offline"),
            presence=raw.get("presence", "offline"),
            phone=raw.get("phone", ""),
            name=raw.get("name", ""),
            team=raw.get("team") or None,
            skills=skills,
            sequence=num("seq"),
            max_calls=max(1, num("max", 1)),
            active=num("active"),
            wrap_s=num("wrap_s"),
            wrap_until_ms=num("wrap_until"),
            last_end_ms=num("last_end"),
            available_since_ms=num("avail_since"),
            handled_today=num("handled"),
            handled_day=raw.get("handled_day", ""),
            version=num("ver"),
            changed_at_ms=num("changed_at"),
            calls=leases,
        )

    def live_state(self) -> dict[str, Any]:
        """What Postgres keeps of the live state, enough to rebuild Redis after a loss."""
        return {
            "presence": self.presence,
            "wrapUntilMs": self.wrap_until_ms,
            "lastEndMs": self.last_end_ms,
            "availableSinceMs": self.available_since_ms,
            "handledToday": self.handled_today,
            "handledDay": self.handled_day,
            "calls": {k: [e, kind] for k, (e, kind) in self.calls.items()},
        }


@dataclass(frozen=True)
class Requirements:
    """Who may take a call: skills with a minimum proficiency, optional skills, a team, a list."""

    skills: dict[str, int] = field(default_factory=dict)  # required: skill -> min level 1..5
    optional: dict[str, int] = field(default_factory=dict)  # preferred, not required
    team: str | None = None
    agent_ids: tuple[int, ...] | None = None  # only these (in this order for `sequential`)
    exclude: frozenset[int] = frozenset()  # already tried on this call

    def admits(self, agent: AgentSnapshot) -> bool:
        if agent.id in self.exclude:
            return False
        if self.agent_ids is not None and agent.id not in self.agent_ids:
            return False
        if self.team and (agent.team or "") != self.team:
            return False
        return all(agent.skills.get(s, 0) >= lvl for s, lvl in self.skills.items())


@dataclass(frozen=True)
class Widening:
    """Skill widening (the "bullseye"): after each step's wait, requirements relax.

    `steps` are (after_s, relax_levels, drop_optional): after `after_s` seconds of waiting the
    minimum proficiency of every required skill drops by `relax_levels` (never below 1) and,
    with `drop_optional`, optional skills stop counting in the match.
    """

    steps: tuple[tuple[float, int, bool], ...] = ()

    @classmethod
    def from_config(cls, raw: Any) -> Widening:
        steps = []
        for item in raw or ():
            if isinstance(item, dict):
                steps.append(
                    (
                        float(item.get("afterS", item.get("after_s", 0))),
                        int(item.get("relaxBy", item.get("relax_by", 1))),
                        bool(item.get("dropOptional", item.get("drop_optional", False))),
                    )
                )
        return cls(tuple(sorted(steps)))

    def apply(self, req: Requirements, waited_s: float) -> Requirements:
        relax, drop = 0, False
        for after_s, levels, drop_optional in self.steps:
            if waited_s >= after_s:
                relax += levels
                drop = drop or drop_optional
        if not relax and not drop:
            return req
        skills = {s: max(1, lvl - relax) for s, lvl in req.skills.items()}
        return Requirements(
            skills=skills,
            optional={} if drop else req.optional,
            team=req.team,
            agent_ids=req.agent_ids,
            exclude=req.exclude,
        )
