"""Session-wide real services for the suite.

Contract used by every test package (keep the fixture names):
- `services` (session): `.pg_admin_url` (a server-level postgres URL with rights to create
  databases), `.redis_url`, `.temporal_address`.
- `db_url` (module): a fresh database migrated to head, dropped after the module.
- `redis_url` (module): a Redis URL whose database is flushed at module start.
- `settings` (module): `core.config.Settings` with env=test pointing at the above.

TEMPORARY: services come only from DATABASE_URL / REDIS_URL / TEMPORAL_ADDRESS; the embedded
stack (no env vars set) is being added.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

from core.config import Env, Settings
from core.db import migrate


@dataclass(frozen=True)
class Services:
    pg_admin_url: str
    redis_url: str
    temporal_address: str


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    yield Services(
        pg_admin_url=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        temporal_address=os.environ.get("TEMPORAL_ADDRESS", ""),
    )


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest_asyncio.fixture(scope="module")
async def db_url(services: Services) -> AsyncIterator[str]:
    name = f"ivr_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(services.pg_admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(services.pg_admin_url, name)
    await asyncio.to_thread(migrate.upgrade, url)
    yield url
    admin = await asyncpg.connect(_asyncpg_dsn(services.pg_admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="module")
async def redis_url(services: Services) -> AsyncIterator[str]:
    client = aioredis.from_url(services.redis_url)
    await client.flushdb()
    await client.aclose()
    yield services.redis_url


@pytest.fixture(scope="module")
def settings(db_url: str, redis_url: str, services: Services) -> Settings:
    return Settings(
        env=Env.test,
        database_url=db_url,
        redis_url=redis_url,
        temporal_address=services.temporal_address,
    )
