"""Routing tests: a real Redis (the suite's), a store rebuilt from in-memory data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from argon2 import PasswordHasher, profiles

from core import security
from core.routing.model import AgentSnapshot
from core.routing.store import AgentConfig, LiveAgent, QueueRouting, RoutingData, RoutingStore

TECH = {"technical": 3, "english": 4}

FIXTURE_AGENTS = [
    AgentConfig(1, "Asha", "+919800000001", team="billing", skills={"billing": 4}, sequence=1),
    AgentConfig(
        2,
        "Bala",
        "+919800000002",
        team="tech",
        skills={"technical": 5, "english": 3},
        sequence=2,
        max_calls=2,
    ),
    AgentConfig(
        3, "Chitra", "+919800000003", team="tech", skills={"technical": 3, "hindi": 5}, sequence=3
    ),
    AgentConfig(
        4, "Dev", "+919800000004", team="general", skills={"general": 2, "technical": 1}, sequence=4
    ),
]


class Memory:
    """A stand-in for PostgreSQL: the loader serves it, the mirror writes it."""

    def __init__(self, agents: list[AgentConfig], queues: list[QueueRouting] | None = None):
        self.agents = {a.id: a for a in agents}
        self.queues = list(queues or [])
        self.mirrored: dict[int, AgentSnapshot] = {}
        self.loads = 0

    async def load(self) -> RoutingData:
        self.loads += 1
        live = []
        for cfg in self.agents.values():
            snap = self.mirrored.get(cfg.id)
            live.append(
                LiveAgent(
                    cfg,
                    snap.status if snap else "offline",
                    snap.version if snap else 0,
                    snap.live_state() if snap else {},
                )
            )
        return RoutingData(agents=live, queues=self.queues, entries=[])

    async def mirror(self, snaps: list[AgentSnapshot]) -> None:
        for s in snaps:
            old = self.mirrored.get(s.id)
            if old is None or old.version <= s.version:
                self.mirrored[s.id] = s


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def memory() -> Memory:
    return Memory(
        FIXTURE_AGENTS, [QueueRouting(id=7, strategy="longest_idle", skills={"technical": 1})]
    )


@pytest_asyncio.fixture
async def store(redis_client: aioredis.Redis, memory: Memory) -> RoutingStore:
    s = RoutingStore(redis_client, loader=memory.load, mirror=memory.mirror)
    await s.rebuild()
    return s


@pytest.fixture(scope="module")
def cheap_hashing() -> Iterator[None]:
    """Argon2 at its cheapest while a module's API runs (as tests/api does), restored after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))
        security.dummy_password_hash.cache_clear()
        yield
    security.dummy_password_hash.cache_clear()
