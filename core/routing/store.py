"""RoutingStore: live agents, reservations with leases and queue entries in Redis.

Every change runs one Lua script (core.routing.scripts); this class ranks candidates with the
pure strategies (core.routing.strategies) and hands the ranking to the script, which reserves
the first agent still free at that instant. Two callbacks connect it to PostgreSQL:

- `loader` returns the configuration and last mirrored live state; when a script finds Redis
  empty (restarted without persistence, flushed) the store rebuilds from it and retries.
- `mirror` receives the snapshots of agents a script changed, so the caller can write them to
  PostgreSQL (versioned: an older snapshot never overwrites a newer one).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core.errors import Conflict, NotFound
from core.routing import scripts
from core.routing.model import AgentSnapshot, Requirements, Widening
from core.routing.strategies import cursor_value, rank

DAY_TZ = ZoneInfo("Asia/Kolkata")  # "calls handled today" is the centre's local day
ASSIGN_LEASE_S = 30.0  # a queued caller's reserved agent waits this long for the caller's return
REBUILD_LOCK_S = 15.0
DISPATCH_WINDOW = 50  # queue entries considered per dispatch pass


def today() -> str:
    return datetime.now(DAY_TZ).date().isoformat()


def queue_score(priority: int, arrival_ms: int) -> float:
    """Sorted-set score: higher priority first, then earlier arrival (exact in a double)."""
    return float((100 - max(0, min(100, priority))) * 10**13 + arrival_ms)


@dataclass(frozen=True)
class AgentConfig:
    """An agent's routing configuration as PostgreSQL holds it."""

    id: int
    name: str
    phone: str
    team: str | None = None
    skills: dict[str, int] = field(default_factory=dict)
    sequence: int = 0
    max_calls: int = 1
    wrap_s: int = 30

    def fields(self) -> list[str]:
        return [
            "name",
            self.name,
            "phone",
            self.phone,
            "team",
            self.team or "",
            "skills",
            json.dumps(self.skills, sort_keys=True),
            "seq",
            str(self.sequence),
            "max",
            str(self.max_calls),
            "wrap_s",
            str(self.wrap_s),
        ]


@dataclass(frozen=True)
class QueueRouting:
    """What routing needs of a queue (the rest of its settings stay in PostgreSQL)."""

    id: int
    strategy: str = "longest_idle"
    skills: dict[str, int] = field(default_factory=dict)
    optional: dict[str, int] = field(default_factory=dict)
    widening: Widening = field(default_factory=Widening)
    max_size: int = 100
    aging_s: float = 300.0  # a waiting call older than this goes ahead of higher priorities

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "strategy": self.strategy,
                "skills": self.skills,
                "optional": self.optional,
                "maxSize": self.max_size,
                "agingS": self.aging_s,
                "widening": [
                    {"afterS": a, "relaxBy": r, "dropOptional": d}
                    for a, r, d in self.widening.steps
                ],
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> QueueRouting:
        data = json.loads(raw)
        return cls(
            id=int(data["id"]),
            strategy=data.get("strategy", "longest_idle"),
            skills={str(k): int(v) for k, v in (data.get("skills") or {}).items()},
            optional={str(k): int(v) for k, v in (data.get("optional") or {}).items()},
            widening=Widening.from_config(data.get("widening")),
            max_size=int(data.get("maxSize", 100)),
            aging_s=float(data.get("agingS", 300)),
        )

    def requirements(self, waited_s: float) -> Requirements:
        return self.widening.apply(
            Requirements(skills=self.skills, optional=self.optional), waited_s
        )


@dataclass(frozen=True)
class LiveAgent:
    """An agent's row plus its last mirrored live state, for a rebuild."""

    config: AgentConfig
    status: str
    version: int
    live: dict[str, Any]


@dataclass(frozen=True)
class LiveEntry:
    """A waiting queue entry (or callback request keeping its place), for a rebuild."""

    queue_id: int
    call_sid: str
    priority: int
    arrival_ms: int
    caller: str = ""
    kind: str = "call"
    callback_id: int | None = None
    position_at_entry: int = 0


@dataclass(frozen=True)
class RoutingData:
    agents: list[LiveAgent]
    queues: list[QueueRouting]
    entries: list[LiveEntry]


@dataclass(frozen=True)
class PollResult:
    status: str | None  # waiting | assigned | abandoned | ... ; None: not in any queue
    position: int  # 1-based among waiting calls; 0 when not waiting
    size: int
    arrival_ms: int
    agent_id: int | None
    lease: str | None
    now_ms: int


@dataclass(frozen=True)
class LeaveResult:
    previous: str | None
    agent_id: int | None
    lease: str | None
    arrival_ms: int | None
    queue_id: int | None


@dataclass(frozen=True)
class Assignment:
    queue_id: int
    call_sid: str
    agent_id: int
    lease: str
    kind: str  # call | callback
    callback_id: int | None
    waited_s: float


@dataclass(frozen=True)
class QueueEntryLive:
    call_sid: str
    position: int
    priority: int
    arrival_ms: int
    status: str
    kind: str
    caller: str
    callback_id: int | None
    agent_id: int | None


Loader = Callable[[], Awaitable[RoutingData]]
Mirror = Callable[[list[AgentSnapshot]], Awaitable[None]]
Handoff = Callable[[list[Assignment]], Awaitable[None]]


class RoutingStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        loader: Loader | None = None,
        mirror: Mirror | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self.redis = redis
        self.loader = loader
        self.mirror = mirror
        self.handoff = handoff  # callback requests that reached an agent (issue 9's dialer)
        self._scripts: dict[str, Any] = {}

    # --- running scripts -----------------------------------------------------------------

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self.redis.register_script(getattr(scripts, name))
            self._scripts[name] = script
        return script

    async def _run(self, name: str, args: Sequence[Any]) -> list[Any]:
        """Run script `name`; rebuild from PostgreSQL first if Redis lost its data."""
        for attempt in range(3):
            try:
                result = await self._script(name)(keys=[], args=[str(a) for a in args])
            except ResponseError as err:
                if scripts.NOT_LOADED not in str(err) or attempt == 2:
                    raise
                await self.rebuild()
                continue
            *values, changed = result
            if changed:
                await self._mirror([int(i) for i in changed])
            return values
        raise RuntimeError("unreachable")

    async def _mirror(self, ids: list[int]) -> None:
        if self.mirror is None or not ids:
            return
        snaps = await self.snapshots(ids)
        if snaps:
            await self.mirror(snaps)

    async def loaded(self) -> bool:
        return bool(await self.redis.exists("routing:loaded"))

    async def rebuild(self, *, force: bool = False) -> bool:
        """Restore agents, leases, queues and waiting entries from PostgreSQL (one transaction).

        One process rebuilds (a lock); the others wait for the marker. Returns True if this
        call did the rebuild.
        """
        if not force and await self.loaded():
            return False
        if self.loader is None:
            raise RuntimeError("routing state is not loaded and this store has no loader")
        token = uuid.uuid4().hex
        if not await self.redis.set(
            "routing:rebuilding", token, nx=True, px=int(REBUILD_LOCK_S * 1000)
        ):
            deadline = time.monotonic() + REBUILD_LOCK_S
            while time.monotonic() < deadline:
                if await self.loaded():
                    return False
                await asyncio.sleep(0.05)
            return await self.rebuild(force=force)
        try:
            data = await self.loader()
            await self._restore(data)
        finally:
            await self.redis.delete("routing:rebuilding")
        return True

    async def _restore(self, data: RoutingData) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete("agents:all", "queues:all")
            for agent in data.agents:
                cfg, live = agent.config, agent.live
                key = f"agent:{cfg.id}"
                pipe.delete(key, f"{key}:calls")
                calls = {k: f"{int(v[0])}|{v[1]}" for k, v in (live.get("calls") or {}).items()}
                mapping: dict[str, Any] = dict(
                    zip(cfg.fields()[::2], cfg.fields()[1::2], strict=True)
                )
                mapping.update(
                    presence=live.get("presence") or _presence_from_status(agent.status),
                    status=agent.status,
                    ver=agent.version,
                    changed_at=int(time.time() * 1000),
                    wrap_until=int(live.get("wrapUntilMs") or 0),
                    last_end=int(live.get("lastEndMs") or 0),
                    avail_since=int(live.get("availableSinceMs") or 0),
                    handled=int(live.get("handledToday") or 0),
                    handled_day=str(live.get("handledDay") or ""),
                    active=len(calls),
                )
                pipe.hset(key, mapping=mapping)
                if calls:
                    pipe.hset(f"{key}:calls", mapping=calls)
                    for lease, value in calls.items():
                        expiry = int(value.split("|")[0])
                        ttl = max(1000, expiry - int(time.time() * 1000) + 60_000)
                        pipe.set(f"lease:{lease}", cfg.id, px=ttl)
                pipe.sadd("agents:all", cfg.id)
            for queue in data.queues:
                pipe.delete(f"queue:{queue.id}:wait", f"queue:{queue.id}:arr")
                pipe.set(f"queue:{queue.id}:conf", queue.to_json())
                pipe.sadd("queues:all", queue.id)
            for e in data.entries:
                pipe.zadd(
                    f"queue:{e.queue_id}:wait", {e.call_sid: queue_score(e.priority, e.arrival_ms)}
                )
                pipe.zadd(f"queue:{e.queue_id}:arr", {e.call_sid: e.arrival_ms})
                pipe.delete(f"qe:{e.call_sid}")
                pipe.hset(
                    f"qe:{e.call_sid}",
                    mapping={
                        "q": e.queue_id,
                        "prio": e.priority,
                        "arr": e.arrival_ms,
                        "status": "waiting",
                        "kind": e.kind,
                        "caller": e.caller,
                        "cb": e.callback_id or "",
                        "pos0": e.position_at_entry,
                        "seen": int(time.time() * 1000),
                    },
                )
            pipe.set("routing:loaded", "1")
            await pipe.execute()

    # --- agents ----------------------------------------------------------------------------

    async def agent_ids(self) -> list[int]:
        return sorted(int(i) for i in await self.redis.smembers("agents:all"))

    async def snapshots(self, ids: Sequence[int] | None = None) -> list[AgentSnapshot]:
        if ids is None:
            if not await self.loaded():
                await self.rebuild()
            ids = await self.agent_ids()
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.hgetall(f"agent:{agent_id}")
                pipe.hgetall(f"agent:{agent_id}:calls")
            raw = await pipe.execute()
        out = []
        for i, agent_id in enumerate(ids):
            fields, calls = raw[2 * i], raw[2 * i + 1]
            if fields:
                out.append(AgentSnapshot.from_redis(int(agent_id), fields, calls))
        return out

    async def agent(self, agent_id: int) -> AgentSnapshot | None:
        snaps = await self.snapshots([agent_id])
        return snaps[0] if snaps else None

    async def upsert_agent(self, cfg: AgentConfig) -> None:
        await self._run("UPSERT_AGENT", [cfg.id, *cfg.fields()])

    async def remove_agent(self, agent_id: int) -> None:
        (result,) = await self._run("REMOVE_AGENT", [agent_id])
        if str(result) != "1":
            raise Conflict(f"agent {agent_id} is {result}: end or release its call first")

    async def set_presence(self, agent_id: int, presence: str) -> tuple[str, str]:
        """offline / available / break; refused while the agent holds a call or reservation."""
        outcome, old, new = await self._run("SET_PRESENCE", [agent_id, presence])
        if outcome == "missing":
            raise NotFound(f"agent {agent_id} not found")
        if outcome != "ok":
            raise Conflict(
                f"agent {agent_id} is {outcome}: status {presence} is not allowed until the "
                "call ends"
            )
        if new == "available":
            await self.dispatch_all()
        return str(old), str(new)

    async def sweep(self) -> None:
        """Drop expired leases and end finished wrap-ups (status changes are mirrored)."""
        ids = await self.agent_ids()
        if ids:
            await self._run("SWEEP", ids)

    # --- reservations ----------------------------------------------------------------------

    async def reserve(
        self,
        req: Requirements,
        strategy: str,
        *,
        lease: str,
        lease_s: float,
        on_call: bool = False,
        scope: str | None = None,
    ) -> AgentSnapshot | None:
        """Reserve the best free agent for `req` under `lease`; None if nobody is free.

        Idempotent per lease: asking again with the same lease returns the same agent.
        """
        agents = await self.snapshots(list(req.agent_ids) if req.agent_ids is not None else None)
        rr_key = f"rr:{scope}" if scope and strategy == "round_robin" else ""
        cursor = None
        if rr_key:
            raw = await self.redis.get(rr_key)
            cursor = int(raw) if raw else None
        ranked = rank(strategy, agents, req, now_ms=_now_ms(), cursor=cursor, day=today())
        args: list[Any] = [lease, int(lease_s * 1000), "c" if on_call else "r", rr_key]
        for agent in ranked:
            args += [agent.id, cursor_value(agent)]
        (agent_id,) = await self._run("RESERVE", args)
        if agent_id is None:
            return None
        return await self.agent(int(agent_id))

    async def extend(self, lease: str, lease_s: float, *, on_call: bool) -> int | None:
        """Move a lease on (e.g. to cover a dial's ring and talk time); None if it is gone."""
        (agent_id,) = await self._run(
            "EXTEND", [lease, int(lease_s * 1000), "c" if on_call else "r"]
        )
        return int(agent_id) if agent_id is not None else None

    async def release(
        self,
        lease: str,
        *,
        handled: bool,
        queue_id: int | None = None,
        handle_s: float | None = None,
    ) -> int | None:
        """End a lease: after a handled call the agent wraps up; otherwise free at once."""
        (agent_id,) = await self._run(
            "RELEASE",
            [
                lease,
                "1" if handled else "0",
                today(),
                queue_id or "",
                "" if handle_s is None else f"{handle_s:.1f}",
            ],
        )
        if agent_id is not None:
            await self.dispatch_all()
        return int(agent_id) if agent_id is not None else None

    # --- queues ----------------------------------------------------------------------------

    async def set_queue(self, queue: QueueRouting) -> None:
        if not await self.loaded():
            await self.rebuild()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"queue:{queue.id}:conf", queue.to_json())
            pipe.sadd("queues:all", queue.id)
            await pipe.execute()

    async def queue(self, queue_id: int) -> QueueRouting | None:
        raw = await self.redis.get(f"queue:{queue_id}:conf")
        if raw is None and not await self.loaded():
            await self.rebuild()
            raw = await self.redis.get(f"queue:{queue_id}:conf")
        return QueueRouting.from_json(raw) if raw else None

    async def remove_queue(self, queue_id: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"queue:{queue_id}:conf")
            pipe.srem("queues:all", queue_id)
            await pipe.execute()

    async def queue_size(self, queue_id: int) -> int:
        return int(await self.redis.zcard(f"queue:{queue_id}:wait"))

    async def enqueue(
        self,
        queue: QueueRouting,
        call_sid: str,
        *,
        priority: int = 0,
        caller: str = "",
        kind: str = "call",
        callback_id: int | None = None,
    ) -> tuple[int, int, int]:
        """Add a call: (position 1-based or -1 when full, size, arrival ms). Idempotent."""
        arrival = _now_ms()
        pos, size, arrival_ms = await self._run(
            "ENQUEUE",
            [
                queue.id,
                call_sid,
                priority,
                repr(queue_score(priority, arrival)),
                arrival,
                queue.max_size,
                kind,
                caller,
                callback_id or "",
            ],
        )
        return int(pos), int(size), int(arrival_ms)

    async def poll(self, call_sid: str) -> PollResult:
        status, pos, size, arrival, agent, lease, now = await self._run("POLL", [call_sid])
        return PollResult(
            status=status,
            position=int(pos),
            size=int(size),
            arrival_ms=int(arrival),
            agent_id=int(agent) if agent is not None else None,
            lease=lease,
            now_ms=int(now),
        )

    async def leave(self, call_sid: str, status: str, *, release: bool) -> LeaveResult:
        prev, agent, lease, arrival, queue_id = await self._run(
            "LEAVE", [call_sid, status, "1" if release else "0"]
        )
        if release and agent is not None:
            await self.dispatch_all()
        return LeaveResult(
            previous=prev,
            agent_id=int(agent) if agent is not None else None,
            lease=lease,
            arrival_ms=int(arrival) if arrival is not None else None,
            queue_id=int(queue_id) if queue_id is not None else None,
        )

    async def to_callback(self, call_sid: str, callback_id: int) -> bool:
        (status,) = await self._run("TO_CALLBACK", [call_sid, callback_id])
        return status == "waiting"

    async def entries(self, queue_id: int) -> list[QueueEntryLive]:
        """Waiting entries in service order (priority, then arrival)."""
        sids = await self.redis.zrange(f"queue:{queue_id}:wait", 0, -1)
        if not sids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(f"qe:{sid}")
            rows = await pipe.execute()
        out = []
        for i, (sid, row) in enumerate(zip(sids, rows, strict=True)):
            out.append(
                QueueEntryLive(
                    call_sid=sid,
                    position=i + 1,
                    priority=int(row.get("prio") or 0),
                    arrival_ms=int(row.get("arr") or 0),
                    status=row.get("status", "waiting"),
                    kind=row.get("kind") or "call",
                    caller=row.get("caller") or "",
                    callback_id=int(row["cb"]) if row.get("cb") else None,
                    agent_id=int(row["agent"]) if row.get("agent") else None,
                )
            )
        return out

    async def recent_handle_s(self, queue_id: int) -> list[float]:
        return [float(v) for v in await self.redis.lrange(f"queue:{queue_id}:aht", 0, -1)]

    async def queue_ids(self) -> list[int]:
        return sorted(int(i) for i in await self.redis.smembers("queues:all"))

    # --- dispatch --------------------------------------------------------------------------

    async def dispatch_all(self) -> list[Assignment]:
        """Offer free agents to every queue with waiting calls (after an agent frees up)."""
        out: list[Assignment] = []
        ids = await self.queue_ids()
        if not ids:
            return out
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in ids:
                pipe.zcard(f"queue:{q}:wait")
            sizes = await pipe.execute()
        for q, size in zip(ids, sizes, strict=True):
            if size:
                out += await self.dispatch(q)
        return out

    async def dispatch(self, queue_id: int) -> list[Assignment]:
        """Give free agents to this queue's head-of-line eligible calls.

        Order: calls waiting longer than the queue's ageing limit first (oldest first, so a
        low priority never starves), then priority, then arrival. Each call's requirements
        are widened by how long it has waited. Returns the assignments made.
        """
        queue = await self.queue(queue_id)
        if queue is None:
            return []
        sids = await self.redis.zrange(f"queue:{queue_id}:wait", 0, DISPATCH_WINDOW - 1)
        if not sids:
            return []
        agents = await self.snapshots()
        now = _now_ms()
        pool = [a for a in agents if a.free(now)]
        if not pool:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hmget(f"qe:{sid}", "arr", "kind", "cb")
            meta = await pipe.execute()
        entries = [
            (sid, int(m[0] or now), m[1] or "call", int(m[2]) if m[2] else None)
            for sid, m in zip(sids, meta, strict=True)
        ]
        aged = sorted(
            (e for e in entries if now - e[1] >= queue.aging_s * 1000), key=lambda e: e[1]
        )
        order = aged + [e for e in entries if e not in aged]
        rr_key = f"rr:queue:{queue_id}" if queue.strategy == "round_robin" else ""
        cursor = None
        if rr_key:
            raw = await self.redis.get(rr_key)
            cursor = int(raw) if raw else None
        made: list[Assignment] = []
        for sid, arrival, kind, cb in order:
            if not pool:
                break
            waited_s = max(0.0, (now - arrival) / 1000)
            req = queue.requirements(waited_s)
            ranked = rank(queue.strategy, pool, req, now_ms=now, cursor=cursor, day=today())
            if not ranked:
                continue
            lease = f"{sid}:q{queue_id}"
            args: list[Any] = [queue_id, sid, lease, int(ASSIGN_LEASE_S * 1000), rr_key]
            for agent in ranked:
                args += [agent.id, cursor_value(agent)]
            (agent_id,) = await self._run("ASSIGN", args)
            if agent_id is None:
                continue
            agent_id = int(agent_id)
            made.append(Assignment(queue_id, sid, agent_id, lease, kind, cb, waited_s))
            if rr_key:
                chosen = next((a for a in ranked if a.id == agent_id), None)
                cursor = cursor_value(chosen) if chosen else cursor
            fresh = await self.agent(agent_id)
            pool = [a for a in pool if a.id != agent_id]
            if fresh is not None and fresh.free(_now_ms()):
                pool.append(fresh)
        callbacks = [a for a in made if a.kind == "callback"]
        if callbacks and self.handoff is not None:
            await self.handoff(callbacks)
        return made


def _now_ms() -> int:
    return int(time.time() * 1000)


def _presence_from_status(status: str) -> str:
    return status if status in ("offline", "available", "break") else "available"
