"""Alembic environment: async (asyncpg), one transaction per run, serialised by an advisory lock.

The database URL comes from, in order: `config.attributes["url"]` (core/db/migrate.py), `-x url=...`
on the alembic command line, then `core.config.get_settings().database_url` (DATABASE_URL, .env).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import models  # noqa: F401  (registers every table on Base.metadata)
from core.db.base import Base
from core.db.session import async_url

config = context.config

# Only the alembic command line configures logging from the ini file. Called from our own
# processes (ivr db, ivr dev, the tests) fileConfig would replace the host's logging set-up.
if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Any constant works; it only has to be the same for every process migrating this database.
MIGRATION_LOCK_KEY = 0x1F0_0001


def database_url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        from core.config import get_settings

        url = get_settings().database_url
    if not url:
        raise RuntimeError(
            "no database URL: pass -x url=postgresql://... or set DATABASE_URL "
            "(`ivr db ...` also finds the embedded dev database)"
        )
    return async_url(url)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave out of the comparison what autogenerate cannot compare correctly.

    Nothing needs excluding today: Alembic >= 1.10 compares PostgreSQL expression indexes
    (the lower(username) unique index) and sort orders, and the revision is checked against
    a real database by tests/test_migrations.py. Partial-index WHERE clauses and CHECK
    constraints are not compared at all by Alembic, so the tests assert them directly.
    """
    return True


def _configure(connection: Connection | None = None, **kwargs: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        # PostgreSQL's implementation asks the server whether the reflected and the declared
        # default are equal (SELECT <db default> = <model default>), which normalises casts
        # such as 'offline'::character varying vs 'offline'; no false positives for ours.
        compare_server_default=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL (`alembic upgrade head --sql`) without connecting."""
    _configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_online(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        # PostgreSQL runs DDL in the transaction; two processes upgrading at once (replicas
        # started together) queue here and the second finds nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_online)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
