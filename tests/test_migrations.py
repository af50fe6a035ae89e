"""The Alembic history against real, empty PostgreSQL databases of our own.

Not `db_url`: that fixture is already migrated, and these tests are about getting there.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from core.db import (
    migrate,
    models,  # noqa: F401  (registers every table)
)
from core.db.base import Base

ROOT = Path(__file__).resolve().parent.parent


def _dsn(url: str, database: str | None = None) -> str:
    u = make_url(url).set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[str]:
    name = f"ivr_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _dsn(admin_url, name)
    finally:
        admin = await asyncpg.connect(_dsn(admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest_asyncio.fixture
async def empty_db(services) -> AsyncIterator[str]:
    async with scratch_database(services.pg_admin_url) as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def migrated_db(services) -> AsyncIterator[str]:
    async with scratch_database(services.pg_admin_url) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        yield url


@pytest_asyncio.fixture
async def conn(migrated_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that is always rolled back."""
    connection = await asyncpg.connect(migrated_db)
    tx = connection.transaction()
    await tx.start()
    try:
        yield connection
    finally:
        await tx.rollback()
        await connection.close()


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await connection.close()


# --- the history as a whole ------------------------------------------------------------------


def test_history_has_one_head() -> None:
    # 0002_routing: agents keep their mirrored live state (issue 6).
    # 0003_carrier_status_events: every status callback stored raw (issue 9).
    # 0004_user_sessions_valid_after: access tokens end with a password reset.
    assert migrate.head() == "0004"


async def test_upgrade_check_downgrade_and_upgrade_again(empty_db: str) -> None:
    expected = set(Base.metadata.tables)
    assert len(expected) == 17
    assert await asyncio.to_thread(migrate.current, empty_db) is None

    await asyncio.to_thread(migrate.upgrade, empty_db)
    assert await asyncio.to_thread(migrate.current, empty_db) == migrate.head()
    assert await _tables(empty_db) == expected | {"alembic_version"}
    await asyncio.to_thread(migrate.check, empty_db)

    await asyncio.to_thread(migrate.downgrade, empty_db, "base")
    assert await asyncio.to_thread(migrate.current, empty_db) is None
    assert await _tables(empty_db) == {"alembic_version"}
    connection = await asyncpg.connect(empty_db)
    try:
        leftovers = await connection.fetch(
            "SELECT relname, relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND relname <> 'alembic_version'"
            " AND relname NOT LIKE 'alembic_version%'"
        )
        assert [dict(r) for r in leftovers] == []  # no orphaned sequences, indexes or types
    finally:
        await connection.close()

    await asyncio.to_thread(migrate.upgrade, empty_db)
    await asyncio.to_thread(migrate.check, empty_db)


async def test_check_refuses_an_unmigrated_database(empty_db: str) -> None:
    with pytest.raises(migrate.SchemaDriftError, match="run `ivr db upgrade`"):
        await asyncio.to_thread(migrate.check, empty_db)


async def test_check_reports_drift_readably(empty_db: str) -> None:
    await asyncio.to_thread(migrate.upgrade, empty_db)
    connection = await asyncpg.connect(empty_db)
    try:
        await connection.execute(
            "ALTER TABLE agents ALTER COLUMN team TYPE varchar(10);"
            "ALTER TABLE users ADD COLUMN nickname text;"
            "DROP INDEX ix_flow_executions_started_at;"
        )
    finally:
        await connection.close()
    with pytest.raises(migrate.SchemaDriftError) as caught:
        await asyncio.to_thread(migrate.check, empty_db)
    report = "\n".join(caught.value.diffs)
    assert "agents.team" in report
    assert "remove_column users.nickname" in report
    assert "add_index ix_flow_executions_started_at" in report


async def test_check_notices_a_changed_functional_index(empty_db: str) -> None:
    """The lower(username) index is an expression: prove it is compared, not skipped."""
    await asyncio.to_thread(migrate.upgrade, empty_db)
    connection = await asyncpg.connect(empty_db)
    try:
        await connection.execute(
            "DROP INDEX uq_users_username_lower;"
            "CREATE UNIQUE INDEX uq_users_username_lower ON users (lower(email));"
        )
    finally:
        await connection.close()
    with pytest.raises(migrate.SchemaDriftError, match="uq_users_username_lower"):
        await asyncio.to_thread(migrate.check, empty_db)


async def test_helpers_work_on_a_thread_running_an_event_loop(empty_db: str) -> None:
    # Called straight from the loop's thread: env.py's asyncio.run must not collide with it.
    migrate.upgrade(empty_db)
    assert migrate.current(empty_db) == migrate.head()
    migrate.check(empty_db)


async def test_concurrent_upgrades_from_the_alembic_cli_serialise(empty_db: str) -> None:
    """Two processes migrating one empty database (replicas starting together) both succeed."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "alembic", "-x", f"url={empty_db}", "upgrade", "head"]
    procs = [
        await asyncio.create_subprocess_exec(
            *cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    for proc, (out, _) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out.decode()
    check = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-x",
        f"url={empty_db}",
        "check",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()
    assert b"No new upgrade operations detected" in out


# --- what the schema enforces ----------------------------------------------------------------


async def _rejected(
    conn: asyncpg.Connection, error: type[Exception], constraint: str, sql: str, *args: object
) -> None:
    """Assert that `sql` fails on `constraint`, leaving the surrounding transaction usable."""
    await conn.execute("SAVEPOINT rejected")
    with pytest.raises(error, match=constraint):
        await conn.execute(sql, *args)
    await conn.execute("ROLLBACK TO SAVEPOINT rejected")


async def _user(conn: asyncpg.Connection, username: str, role: str = "agent") -> int:
    return await conn.fetchval(
        "INSERT INTO users (username, password_hash, role) VALUES ($1, 'x', $2) RETURNING id",
        username,
        role,
    )


async def _flow(conn: asyncpg.Connection, name: str, **cols: object) -> int:
    names = ["name", *cols]
    values = [name, *cols.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(
        f"INSERT INTO ivr_flows ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",
        *values,
    )


async def _node(conn: asyncpg.Connection, flow_id: int, key: str, type_: str = "play") -> None:
    await conn.execute(
        "INSERT INTO flow_nodes (flow_id, node_key, type, name) VALUES ($1, $2, $3, $2)",
        flow_id,
        key,
        type_,
    )


async def test_usernames_are_unique_ignoring_case(conn: asyncpg.Connection) -> None:
    await _user(conn, "Priya")
    with pytest.raises(asyncpg.UniqueViolationError, match="uq_users_username_lower"):
        await _user(conn, "priya")


async def test_role_must_be_one_of_the_four(conn: asyncpg.Connection) -> None:
    for role in ("super_admin", "admin", "manager", "agent"):
        await _user(conn, f"u_{role}", role)
    with pytest.raises(asyncpg.CheckViolationError, match="ck_users_role"):
        await _user(conn, "root", "root")


async def test_connection_must_join_existing_nodes_of_its_flow(conn: asyncpg.Connection) -> None:
    flow = await _flow(conn, "f")
    other = await _flow(conn, "g")
    await _node(conn, flow, "welcome", "welcome")
    await _node(conn, other, "menu", "menu")
    insert = (
        "INSERT INTO flow_connections (flow_id, from_node_key, to_node_key, port)"
        " VALUES ($1, $2, $3, $4)"
    )
    fk = asyncpg.ForeignKeyViolationError
    await _rejected(
        conn, fk, "fk_flow_connections_to_node", insert, flow, "welcome", "nowhere", "x"
    )
    await _rejected(
        conn, fk, "fk_flow_connections_from_node", insert, flow, "nowhere", "welcome", "x"
    )
    # A node of the same key in another flow does not count.
    await _rejected(conn, fk, "fk_flow_connections_to_node", insert, flow, "welcome", "menu", "x")
    await conn.execute(insert, flow, "welcome", "welcome", "x")  # the real node is accepted


async def test_node_rename_and_delete_carry_connections(conn: asyncpg.Connection) -> None:
    flow = await _flow(conn, "f")
    await _node(conn, flow, "welcome", "welcome")
    await _node(conn, flow, "menu", "menu")
    await conn.execute(
        "INSERT INTO flow_connections (flow_id, from_node_key, to_node_key, port)"
        " VALUES ($1, 'welcome', 'menu', 'default')",
        flow,
    )
    await conn.execute(
        "UPDATE flow_nodes SET node_key = 'main_menu' WHERE flow_id = $1 AND node_key = 'menu'",
        flow,
    )
    assert await conn.fetchval("SELECT to_node_key FROM flow_connections") == "main_menu"
    await conn.execute("DELETE FROM flow_nodes WHERE node_key = 'main_menu'")
    assert await conn.fetchval("SELECT count(*) FROM flow_connections") == 0


async def test_only_one_live_default_flow(conn: asyncpg.Connection) -> None:
    old = await _flow(conn, "old", is_default=True)
    await conn.execute("UPDATE ivr_flows SET deleted_at = now() WHERE id = $1", old)
    await _flow(conn, "main", is_default=True)  # a deleted default does not count
    await _flow(conn, "sample", is_default=False)
    with pytest.raises(asyncpg.UniqueViolationError, match="uq_ivr_flows_single_default"):
        await _flow(conn, "second", is_default=True)


async def test_live_version_must_exist_for_that_flow(conn: asyncpg.Connection) -> None:
    flow = await _flow(conn, "f")
    # Deferred: a publish may point at the version before inserting it, in one transaction.
    await conn.execute("UPDATE ivr_flows SET live_version = 1 WHERE id = $1", flow)
    await conn.execute(
        "INSERT INTO flow_versions (flow_id, version, definition, checksum)"
        " VALUES ($1, 1, '{}', 'c')",
        flow,
    )
    await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT would check
    await conn.execute("SET CONSTRAINTS ALL DEFERRED")
    await conn.execute("UPDATE ivr_flows SET live_version = 2 WHERE id = $1", flow)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="fk_ivr_flows_live_version"):
        await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")


async def test_called_numbers_must_be_e164(conn: asyncpg.Connection) -> None:
    flow = await _flow(conn, "f")
    await conn.execute(
        "INSERT INTO flow_numbers (number, flow_id) VALUES ('+918047112233', $1)", flow
    )
    with pytest.raises(asyncpg.CheckViolationError, match="ck_flow_numbers_e164"):
        await conn.execute(
            "INSERT INTO flow_numbers (number, flow_id) VALUES ('08047112233', $1)", flow
        )


async def test_deleted_queue_frees_its_name(conn: asyncpg.Connection) -> None:
    insert = "INSERT INTO queues (name) VALUES ('tech') RETURNING id"
    first = await conn.fetchval(insert)
    await _rejected(conn, asyncpg.UniqueViolationError, "uq_queues_name_live", insert)
    await conn.execute("UPDATE queues SET deleted_at = now() WHERE id = $1", first)
    assert await conn.fetchval(insert) != first


async def test_statuses_and_strategies_are_checked(conn: asyncpg.Connection) -> None:
    for sql, constraint in (
        ("INSERT INTO queues (name, strategy) VALUES ('q', 'random')", "ck_queues_strategy"),
        ("INSERT INTO queues (name, announce_interval_s) VALUES ('q', 0)", "ck_queues_announce"),
        (
            "INSERT INTO agents (name, phone_number, status) VALUES ('a', '+91', 'asleep')",
            "ck_agents_status",
        ),
        (
            "INSERT INTO flow_executions (call_sid, workflow_id, status) VALUES ('c', 'w', 'x')",
            "ck_flow_executions_status",
        ),
        (
            "INSERT INTO voice_callbacks (phone_number, max_attempts) VALUES ('+91', 0)",
            "ck_voice_callbacks_retry",
        ),
    ):
        await _rejected(conn, asyncpg.CheckViolationError, constraint, sql)


async def test_every_timestamp_is_timestamptz_and_every_document_jsonb(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public'"
        " AND data_type IN ('timestamp without time zone', 'json', 'time without time zone')"
    )
    assert [dict(r) for r in rows] == []


async def test_every_surrogate_key_has_a_sequence(conn: asyncpg.Connection) -> None:
    """Both in the database and in the metadata the ORM inserts with (ivr_flows.id is part of
    a foreign key, which silently costs a column its autoincrement unless stated)."""
    for table in Base.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].type.python_type is not int:
            continue
        assert table.autoincrement_column is pk[0], table.name
        sequence = await conn.fetchval(
            "SELECT pg_get_serial_sequence($1, $2)", table.name, pk[0].name
        )
        assert sequence, f"{table.name}.{pk[0].name} has no sequence"


async def test_history_keyset_query_uses_the_index(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO flow_executions (call_sid, workflow_id, started_at)"
        " SELECT 'c' || g, 'w' || g, now() - g * interval '1 second'"
        " FROM generate_series(1, 5000) g"
    )
    await conn.execute("ANALYZE flow_executions")
    plan = "\n".join(
        r[0]
        for r in await conn.fetch(
            "EXPLAIN SELECT id FROM flow_executions"
            " WHERE (started_at, id) < (now(), 9223372036854775807)"
            " ORDER BY started_at DESC, id DESC LIMIT 50"
        )
    )
    assert "Index" in plan and "ix_flow_executions_started_at" in plan, plan
    assert "Sort" not in plan, plan
