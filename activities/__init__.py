"""Activities: every side effect a workflow needs (DB, Redis, HTTP, carrier REST).

`build_activities(settings)` is the worker's registry. It owns the dependencies activity
classes receive (engine and session maker now; Redis and HTTP clients as they are needed),
yields the list of activity callables, and closes the dependencies when the worker stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.callback_queue import CallbackQueueActivities
from activities.callbacks import CallbackActivities
from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from activities.logic import LogicActivities
from activities.routing import RoutingActivities
from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.redis import make_redis


def _database_url(settings: Settings) -> str:
    # Empty means the embedded server `ivr dev` runs (which always passes DATABASE_URL).
    embedded = f"postgresql://postgres@127.0.0.1:{settings.embedded_pg_port}/ivr"
    return settings.database_url or embedded


@asynccontextmanager
async def build_activities(settings: Settings) -> AsyncIterator[list[Callable[..., Any]]]:
    """Yield every activity callable, bound to dependencies built from `settings`."""
    engine = make_engine(_database_url(settings))  # connects lazily, on first use
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    # Empty means the embedded redis-server `ivr dev` runs (which always passes REDIS_URL).
    redis = make_redis(settings.redis_url or f"redis://127.0.0.1:{settings.embedded_redis_port}/0")
    try:
        yield _activities(settings, make_sessionmaker(engine), http, redis)
    finally:
        await http.aclose()
        await redis.aclose()
        await engine.dispose()


def _activities(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    redis: Any = None,
) -> list[Callable[..., Any]]:
    """Every activity, from each activity class built once with its dependencies."""
    return [
        *CallActivities(sessionmaker).all(),
        *CarrierActivities(settings, http, redis).all(),
        *LogicActivities(settings, sessionmaker, http, redis).all(),
        *CallbackActivities(settings, sessionmaker, http).all(),
        *CallbackQueueActivities(settings, sessionmaker).all(),
        *(RoutingActivities(sessionmaker, redis).all() if redis is not None else []),
    ]
