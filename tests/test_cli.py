"""The `ivr` command: its commands, `ivr db` on real databases, and `ivr dev` end to end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cli.main import app
from cli.stack import StackError, fake_exotel_script, free_port, port_in_use
from core.db import migrate

ROOT = Path(__file__).resolve().parent.parent
IVR = Path(sys.executable).parent / "ivr"
SERVICE_URL_VARS = ("DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS")

runner = CliRunner()


def _dsn(url: str, database: str | None = None) -> str:
    u = make_url(url).set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


@pytest_asyncio.fixture
async def empty_db(services) -> AsyncIterator[str]:
    name = f"ivr_cli_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(services.pg_admin_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield _dsn(services.pg_admin_url, name)
    admin = await asyncpg.connect(_dsn(services.pg_admin_url))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_ports(names: Sequence[str]) -> dict[str, int]:
    """A different free port for each name: every socket stays bound until all are picked
    (free_port() called once per name may hand out the same port twice, and then ivr dev
    rightly refuses two services on one port)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                 for _ in names]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return {name: int(sock.getsockname()[1]) for name, sock in zip(names, socks, strict=True)}


def _env(**overrides: str) -> dict[str, str]:
    """A child environment with no service URLs (so embedded ones start) plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_URL_VARS}
    env.update(overrides)
    return env


def _ivr(*args: str, env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(IVR), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )


# --------------------------------------------------------------------------- commands


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("dev", "db", "seed"):
        assert re.search(rf"^\W*{command}\b", result.output, re.MULTILINE), result.output
    result = runner.invoke(app, ["db", "--help"])
    assert result.exit_code == 0, result.output
    for command in ("upgrade", "downgrade", "check", "current"):
        assert command in result.output


def test_db_commands_on_database_url(empty_db: str) -> None:
    env = {"DATABASE_URL": empty_db}

    def ivr(*args: str):
        return runner.invoke(app, list(args), env=env)

    def current() -> str:
        # The last line: other tests may have routed library logs (alembic) to stdout.
        return ivr("db", "current").output.strip().splitlines()[-1]

    assert current() == "none"
    drift = ivr("db", "check")
    assert drift.exit_code == 1
    assert "ivr db upgrade" in drift.output

    upgraded = ivr("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert current() == migrate.head()
    checked = ivr("db", "check")
    assert checked.exit_code == 0, checked.output
    assert "matches" in checked.output

    for _ in range(2):  # the seed is idempotent
        seeded = ivr("seed")
        assert seeded.exit_code == 0, seeded.output
    assert asyncio.run(_usernames(empty_db)) >= {"admin", "manager", "agent"}

    downgraded = ivr("db", "downgrade", "base")
    assert downgraded.exit_code == 0, downgraded.output
    assert current() == "none"


async def _usernames(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["username"] for r in await conn.fetch("SELECT username FROM users")}
    finally:
        await conn.close()


def test_db_never_takes_the_system_postgres_for_the_embedded_one(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "IVR_PG_PORT": "5432", "IVR_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 1
    assert "reserved for the system PostgreSQL" in result.output
    assert "IVR_PG_PORT" in result.output


def test_db_downgrade_needs_a_revision() -> None:
    result = runner.invoke(app, ["db", "downgrade"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output
    assert "revision" in result.output.lower()


@pytest.mark.slow
def test_db_upgrade_starts_the_embedded_postgres_only_for_the_command(tmp_path: Path) -> None:
    port = free_port()
    env = _env(IVR_DATA_DIR=str(tmp_path / "data"), IVR_PG_PORT=str(port))
    first = _ivr("db", "upgrade", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert not port_in_use(port), "the embedded postgres must stop with the command"
    second = _ivr("db", "current", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.strip().splitlines()[-1] == migrate.head()
    log = (tmp_path / "data" / "logs" / "postgres.log").read_text()
    assert log.count("=== initdb") == 1, "the second command must reuse the data directory"


def test_dev_refuses_a_taken_port_and_names_the_variable(
    tmp_path: Path, listening_port: int
) -> None:
    # Every other port free, so that the taken one is what stops it (not a default in use).
    others = ("REDIS", "TEMPORAL", "TEMPORAL_UI", "API", "DASHBOARD")
    env = _env(
        IVR_DATA_DIR=str(tmp_path / "data"),
        IVR_PG_PORT=str(listening_port),
        **{f"IVR_{name}_PORT": str(port) for name, port in free_ports(others).items()},
    )
    result = _ivr("dev", env=env, timeout_s=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"port {listening_port} (PostgreSQL) is already in use" in output
    assert "IVR_PG_PORT" in output
    assert not (tmp_path / "data" / "postgres").exists(), "nothing may start before the check"


def test_dev_fake_carrier_refuses_a_taken_port_and_names_the_variable(
    tmp_path: Path, listening_port: int
) -> None:
    others = ("PG", "REDIS", "TEMPORAL", "TEMPORAL_UI", "API", "DASHBOARD")
    env = _env(
        IVR_DATA_DIR=str(tmp_path / "data"),
        IVR_FAKE_EXOTEL_PORT=str(listening_port),
        **{f"IVR_{name}_PORT": str(port) for name, port in free_ports(others).items()},
    )
    result = _ivr("dev", "--fake-carrier", env=env, timeout_s=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"port {listening_port} (fake Exotel) is already in use" in output
    assert "IVR_FAKE_EXOTEL_PORT" in output
    assert not (tmp_path / "data" / "logs").exists(), "nothing may start before the check"


def test_fake_carrier_needs_the_source_checkout(tmp_path: Path) -> None:
    assert fake_exotel_script() == ROOT / "tests" / "fakes" / "fake_exotel.py"
    with pytest.raises(StackError, match="--fake-carrier runs the fake Exotel from the source "
                       "checkout") as err:
        fake_exotel_script(tmp_path)
    assert str(tmp_path / "tests" / "fakes" / "fake_exotel.py") in str(err.value)


# --------------------------------------------------------------------------- ivr dev


class DevProcess:
    """`ivr dev` as a real subprocess, its output collected by a thread."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(IVR), "dev", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            if self.proc.poll() is not None:
                self._reader.join(5)
                if text in self.output:
                    return
                raise AssertionError(f"ivr dev exited ({self.proc.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout_s}s:\n{self.output}")
            time.sleep(0.2)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                for child in self.descendants():
                    child.kill()
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


def _gone(processes: list[psutil.Process], timeout_s: float = 10) -> list[psutil.Process]:
    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout_s
    left = [p for p in processes if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10, follow_redirects=True)


def _wait_status(url: str, status: int, timeout_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = _get(url)
            if response.status_code == status or time.monotonic() > deadline:
                return response
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_ivr_dev_brings_everything_up_and_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    ports = free_ports(("PG", "REDIS", "TEMPORAL", "TEMPORAL_UI", "API", "DASHBOARD"))
    env = _env(
        IVR_DATA_DIR=str(tmp_path / "data"),
        **{f"IVR_{name}_PORT": str(port) for name, port in ports.items()},
    )
    dev = DevProcess(env)
    try:
        dev.wait_for("Ctrl-C stops everything", timeout_s=240)
        api = f"http://127.0.0.1:{ports['API']}"
        assert f"{api}/api/docs" in dev.output
        assert f"http://127.0.0.1:{ports['DASHBOARD']}" in dev.output
        assert f"http://127.0.0.1:{ports['TEMPORAL_UI']}" in dev.output
        assert "admin / admin123" in dev.output
        assert re.search(rf"{api}/api/exotel/[^/\s]+/passthru", dev.output)

        health = _wait_status(f"{api}/health", 200)
        assert health.status_code == 200, health.text
        assert _get(f"{api}/api/docs").status_code == 200
        assert _get(f"http://127.0.0.1:{ports['DASHBOARD']}/").status_code == 200
        assert _get(f"http://127.0.0.1:{ports['TEMPORAL_UI']}/").status_code == 200

        children = dev.descendants()
        names = " ".join(" ".join(p.cmdline()) for p in children)
        for expected in (
            "postgres",
            "redis-server",
            "temporal",
            "worker.py",
            "uvicorn",
            "streamlit",
        ):
            assert expected in names, f"{expected} is not running under ivr dev: {names}"
        assert not (tmp_path / "data" / "logs" / "ivr-dev.log").exists()

        # `ivr db` finds the running stack's PostgreSQL on its port and uses it.
        current = _ivr("db", "current", env=env)
        assert current.returncode == 0, current.stdout + current.stderr
        assert current.stdout.strip().splitlines()[-1] == migrate.head()
    finally:
        dev.stop()
    assert dev.proc.returncode == 0, dev.output
    assert "stopped" in dev.output
    assert _gone(children) == [], f"left running after ivr dev stopped: {_gone(children)}"
    for port in ports.values():
        assert not port_in_use(port), f"port {port} is still held"
    logs = tmp_path / "data" / "logs"
    for name in ("postgres", "redis", "temporal", "worker", "dashboard"):
        last = (logs / f"{name}.log").read_text().splitlines()[-1]
        assert re.match(r"=== stopped by SIG(INT|TERM); exit 0 ", last), (name, last)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ivr_dev_stops_everything_when_a_child_dies(
    tmp_path: Path, services, empty_db: str
) -> None:
    """Given URLs for all three services it starts only the app processes; killing one ends it."""
    ports = free_ports(("API", "DASHBOARD"))
    env = _env(
        IVR_DATA_DIR=str(tmp_path / "data"),
        IVR_API_PORT=str(ports["API"]),
        IVR_DASHBOARD_PORT=str(ports["DASHBOARD"]),
        DATABASE_URL=empty_db,
        REDIS_URL=services.redis_url,
        TEMPORAL_ADDRESS=services.temporal_address,
    )
    dev = DevProcess(env)
    try:
        dev.wait_for("Ctrl-C stops everything", timeout_s=180)
        assert f"{services.temporal_address} (external)" in dev.output
        children = dev.descendants()
        names = " ".join(" ".join(p.cmdline()) for p in children)
        assert "postgres" not in names and "redis-server" not in names
        assert "temporal server" not in names
        api = next(p for p in children if "uvicorn" in " ".join(p.cmdline()))
        api.kill()
        dev.proc.wait(60)
    finally:
        dev.stop()
    assert dev.proc.returncode == 1, dev.output
    assert "api was killed by signal 9" in dev.output
    assert str(tmp_path / "data" / "logs" / "api.log") in dev.output
    assert _gone(children) == []



async def _restart_callback_ids(url: str) -> None:
    """Callback workflows are `callback-{id}` on the session's shared Temporal server, and a
    fresh database counts from 1: start this one's ids elsewhere."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        start = 10_000 * (1 + uuid.uuid4().int % 200_000)
        await conn.execute(f"ALTER SEQUENCE voice_callbacks_id_seq RESTART WITH {start}")
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ivr_dev_fake_carrier_dials_a_callback_through_the_fake(
    tmp_path: Path, services, db_url: str, redis_url: str
) -> None:
    """`ivr dev --fake-carrier`: the fake Exotel runs as a child, the worker's Exotel client
    uses it, and a callback scheduled through the API is dialled through it, walks our flow
    through the Exotel webhooks, is settled by the fake's status callback and gets its SMS."""
    asyncio.run(_restart_callback_ids(db_url))
    ports = free_ports(("API", "DASHBOARD", "FAKE_EXOTEL"))
    env = _env(
        IVR_DATA_DIR=str(tmp_path / "data"),
        **{f"IVR_{name}_PORT": str(port) for name, port in ports.items()},
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        TEMPORAL_ADDRESS=services.temporal_address,
        TEMPORAL_TASK_QUEUE=f"dev-fake-{uuid.uuid4().hex[:8]}",
    )
    for name in [k for k in env if k.startswith("EXOTEL_")]:
        del env[name]  # whatever the outer environment says, the fake's must win
    fake = f"http://127.0.0.1:{ports['FAKE_EXOTEL']}"
    api = f"http://127.0.0.1:{ports['API']}"
    dev = DevProcess(env, "--fake-carrier")
    try:
        dev.wait_for("Ctrl-C stops everything", timeout_s=180)
        assert f"Fake Exotel  {fake}" in dev.output
        assert _get(f"{fake}/health").json()["ok"] is True
        children = dev.descendants()
        worker = next(p for p in children if "worker.py" in " ".join(p.cmdline()))
        worker_env = worker.environ()
        assert worker_env["EXOTEL_API_BASE"] == fake
        assert worker_env["EXOTEL_SID"] == "fakeacct" and worker_env["EXOTEL_API_TOKEN"]
        assert worker_env["EXOTEL_SMS_SENDER"] == "IVRDEV"
        assert any("fake_exotel.py" in " ".join(p.cmdline()) for p in children)

        with httpx.Client(base_url=api, timeout=20) as http:
            login = http.post("/api/auth/login", json={"username": "admin",
                                                       "password": "admin123"})
            auth = {"Authorization": f"Bearer {login.json()['accessToken']}"}
            flows = http.get("/api/flows", headers=auth).json()["items"]
            flow_id = next(f["id"] for f in flows if f["liveVersion"])
            created = http.post("/api/callbacks", headers=auth, json={
                "phoneNumber": "+919812300077", "asap": True, "flowId": flow_id,
                "sendSms": True})
            assert created.status_code == 201, created.text
            callback_id = created.json()["id"]
            deadline = time.monotonic() + 90
            while True:
                detail = http.get(f"/api/callbacks/{callback_id}", headers=auth).json()
                if detail["status"] in ("completed", "failed", "exhausted", "cancelled"):
                    break
                assert time.monotonic() < deadline, detail
                time.sleep(0.5)
        assert detail["status"] == "completed", detail
        assert detail["carrierEventCount"] == 1

        seen = _get(fake).json()
        [call] = [c for c in seen["calls"] if c["customField"] == f"cb:{callback_id}:1"]
        assert call["sid"] == detail["attempts"][0]["callSid"]
        assert call["from"] == "+919812300077" and call["status"] == "completed"
        assert call["turns"] and all(t["status"] == 200 for t in call["turns"]), call
        assert '"select"' in call["turns"][0]["body"]  # our Passthru answered it
        [sms] = [m for m in seen["sms"] if m["To"] == "+919812300077"]
        assert sms["From"] == "IVRDEV" and sms["Body"].startswith("We will call you back at ")
        assert sms["CustomField"] == f"cb:{callback_id}:sms:callback_scheduled"
        assert any(s["status"] == 200 for s in seen["statusCallbacks"])
    finally:
        dev.stop()
    assert dev.proc.returncode == 0, dev.output
    assert _gone(children) == []
    last = (tmp_path / "data" / "logs" / "fake-exotel.log").read_text().splitlines()[-1]
    assert re.match(r"=== stopped by SIGTERM; exit 0 ", last), last
