"""The embedded stack: services answer, ports are checked, children supervised, data kept."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType, WorkflowExecutionStatus
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

import worker
from cli.stack import (
    StackError,
    Supervisor,
    ensure_port_free,
    free_port,
    logs_dir,
    pg_url,
    start_backing_services,
    start_postgres,
    temporal_dev_argv,
)
from core.config import Settings
from core.temporal import SEARCH_ATTRIBUTE_TYPES, call_workflow_id, callback_workflow_id


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for a non-reaping init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _wait_gone(pids: list[int], timeout_s: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if not _gone(p)]
        time.sleep(0.1)
    return alive


# --------------------------------------------------------------------------- the services


async def test_services_answer(services, temporal_client: Client) -> None:
    conn = await asyncpg.connect(services.pg_admin_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        port = await conn.fetchval("SELECT current_setting('port')::int")
    finally:
        await conn.close()
    assert port != 5432 or "DATABASE_URL" in os.environ

    client = aioredis.from_url(services.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()

    listed = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_client.namespace)
    )
    for name, type_name in SEARCH_ATTRIBUTE_TYPES.items():
        assert name in listed.custom_attributes, name
        registered = IndexedValueType.Name(listed.custom_attributes[name])
        assert registered.replace("_", "") == f"INDEXEDVALUETYPE{type_name.upper()}"


def test_search_attributes_and_ids() -> None:
    assert SEARCH_ATTRIBUTE_TYPES == {
        "FlowId": "Int",
        "FlowVersion": "Int",
        "CurrentNode": "Keyword",
        "CallStatus": "Keyword",
        "QueueName": "Keyword",
        "CallerHash": "Keyword",
    }
    assert call_workflow_id("CA123") == "call-CA123"
    assert callback_workflow_id(42) == "callback-42"


def test_temporal_dev_command_line(tmp_path: Path) -> None:
    argv = temporal_dev_argv(tmp_path / "temporal.db", 17001, 18001)
    joined = " ".join(argv)
    assert argv[1:3] == ["server", "start-dev"]
    assert f"--db-filename {tmp_path / 'temporal.db'}" in joined
    assert "--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal" in joined
    assert "--port 17001 --ui-port 18001 --ip 127.0.0.1 --log-level warn" in joined
    for name, type_name in SEARCH_ATTRIBUTE_TYPES.items():
        assert f"--search-attribute {name}={type_name}" in joined


# --------------------------------------------------------------------------- ports


def test_taken_port_names_port_and_variable(listening_port: int) -> None:
    with pytest.raises(StackError) as caught:
        ensure_port_free(listening_port, "Redis")
    assert f"port {listening_port} (Redis) is already in use" in str(caught.value)
    assert "IVR_REDIS_PORT" in str(caught.value)


@pytest.mark.parametrize(
    ("port", "service", "var"),
    [(5432, "PostgreSQL", "IVR_PG_PORT"), (6379, "Redis", "IVR_REDIS_PORT")],
)
def test_system_ports_are_never_used(port: int, service: str, var: str) -> None:
    with pytest.raises(StackError, match=f"reserved for the system.*{var}"):
        ensure_port_free(port, service)


async def test_postgres_on_a_taken_port_fails_before_touching_data(
    listening_port: int, tmp_path: Path
) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        with pytest.raises(StackError, match=f"port {listening_port} .*IVR_PG_PORT"):
            await start_postgres(sup, tmp_path / "pg", listening_port)
        assert sup.children == []
    assert not (tmp_path / "pg").exists()


# --------------------------------------------------------------------------- supervisor


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _wait_for_line(path: Path, line: str, timeout_s: float = 10) -> None:
    """Wait for `line` alone on a line of a child's log (the log header repeats its argv)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if line in path.read_text().splitlines():
            return
        time.sleep(0.05)
    raise AssertionError(f"{line!r} never appeared in {path}")


def test_supervisor_stops_children_newest_first(tmp_path: Path) -> None:
    record = tmp_path / "order"
    code = f"""
        import signal, sys, time
        def bye(*_):
            with open({str(record)!r}, "a") as f:
                f.write(sys.argv[1] + "\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        while True:
            time.sleep(1)
    """
    sup = Supervisor(tmp_path / "logs")
    for name in ("first", "second", "third"):
        sup.spawn(name, [*_python(code), name])
    for child in sup.children:
        _wait_for_line(child.log_path, "ready")
    pids = [c.pid for c in sup.children]
    sup.stop_all()
    assert record.read_text().split() == ["third", "second", "first"]
    assert _wait_gone(pids) == []


def test_supervisor_kills_a_child_that_ignores_the_signal(tmp_path: Path) -> None:
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        while True:
            time.sleep(1)
    """
    sup = Supervisor(tmp_path / "logs")
    child = sup.spawn("stubborn", _python(code))
    _wait_for_line(child.log_path, "ready")
    started = time.monotonic()
    sup.stop_all(timeout_s=1)
    assert time.monotonic() - started < 5
    assert child.proc.returncode == -signal.SIGKILL


def test_supervisor_reports_a_dead_child_with_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    try:
        sup.spawn("done", _python("pass"), may_exit_cleanly=True)
        crasher = sup.spawn("crasher", _python("print('boom: no config'); raise SystemExit(3)"))
        crasher.proc.wait(10)
        sup.children[0].proc.wait(10)
        dead = sup.dead()
        assert dead is crasher
        message = dead.failure()
        assert "crasher exited (3)" in message
        assert str(tmp_path / "logs" / "crasher.log") in message
        assert "boom: no config" in message
    finally:
        sup.stop_all()


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    """`kill -9` of the supervising process must not leave orphans (parent-death signal)."""
    parent = subprocess.run(
        _python(f"""
            import os, signal
            from pathlib import Path
            from cli.stack import Supervisor
            sup = Supervisor(Path({str(tmp_path)!r}))
            child = sup.spawn("sleeper", ["sleep", "60"])
            print(child.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert parent.returncode == -signal.SIGKILL
    child_pid = int(parent.stdout.split()[0])
    assert _wait_gone([child_pid], timeout_s=5) == []


# --------------------------------------------------------------------------- persistence


def _embedded_settings(data_dir: Path) -> Settings:
    return Settings(
        IVR_DATA_DIR=data_dir,
        IVR_PG_PORT=free_port(),
        IVR_REDIS_PORT=free_port(),
        IVR_TEMPORAL_PORT=free_port(),
        IVR_TEMPORAL_UI_PORT=free_port(),
        database_url="",
        redis_url="",
        temporal_address="",
    )


@pytest.mark.slow
async def test_a_second_start_reuses_the_data(tmp_path: Path) -> None:
    settings = _embedded_settings(tmp_path / "data")
    workflow_id = "reuse-check"

    sup = Supervisor(logs_dir(settings))
    try:
        backing = await start_backing_services(settings, sup)
        assert backing.embedded == {"postgres", "redis", "temporal"}
        assert backing.database_url == pg_url(settings.embedded_pg_port, "ivr")
        conn = await asyncpg.connect(backing.database_url)
        await conn.execute("CREATE TABLE marker (id int)")
        await conn.close()
        r = aioredis.from_url(backing.redis_url)
        await r.set("marker", "kept")
        await r.aclose()
        client = await Client.connect(backing.temporal_address)
        # No worker serves this queue: the workflow just stays open, in temporal.db.
        await client.start_workflow("Nobody", id=workflow_id, task_queue="nobody")
        pids = [c.pid for c in sup.children]
    finally:
        sup.stop_all()
    assert _wait_gone(pids) == []
    assert (tmp_path / "data" / "temporal.db").exists()
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()

    sup = Supervisor(logs_dir(settings))
    try:
        backing = await start_backing_services(settings, sup)
        conn = await asyncpg.connect(backing.database_url)
        assert await conn.fetchval("SELECT count(*) FROM marker") == 0
        await conn.close()
        r = aioredis.from_url(backing.redis_url)
        assert await r.get("marker") == b"kept"
        await r.aclose()
        client = await Client.connect(backing.temporal_address)
        described = await client.get_workflow_handle(workflow_id).describe()
        assert described.raw_description.workflow_execution_info.status == (
            WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        )
    finally:
        sup.stop_all()
    postgres_log = (logs_dir(settings) / "postgres.log").read_text()
    assert postgres_log.count("=== initdb") == 1


@pytest.mark.slow
async def test_only_services_without_a_url_are_started(tmp_path: Path, services) -> None:
    settings = _embedded_settings(tmp_path / "data").model_copy(
        update={"database_url": services.pg_admin_url, "redis_url": services.redis_url}
    )
    sup = Supervisor(logs_dir(settings))
    try:
        backing = await start_backing_services(settings, sup)
        assert backing.embedded == {"temporal"}
        assert [c.name for c in sup.children] == ["temporal"]
        assert backing.database_url == services.pg_admin_url
        assert backing.redis_url == services.redis_url
    finally:
        sup.stop_all()


# --------------------------------------------------------------------------- worker.py


async def _pollers(client: Client, task_queue: str) -> int:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(response.pollers)


async def test_worker_serves_the_registries_until_stopped(
    settings: Settings, temporal_client: Client
) -> None:
    task_queue = f"worker-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    running = asyncio.create_task(
        worker.run(settings.model_copy(update={"temporal_task_queue": task_queue}), stop)
    )
    try:
        deadline = time.monotonic() + 20
        while await _pollers(temporal_client, task_queue) == 0:
            assert not running.done(), running
            assert time.monotonic() < deadline, "the worker never polled its task queue"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
    assert await asyncio.wait_for(running, 30) == 0


async def test_worker_with_empty_registries_exits_0(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.asynccontextmanager
    async def nothing(_settings: Settings) -> AsyncIterator[list]:
        yield []

    monkeypatch.setattr(worker, "WORKFLOWS", [])
    monkeypatch.setattr(worker, "build_activities", nothing)
    assert await asyncio.wait_for(worker.run(settings, asyncio.Event()), 10) == 0
