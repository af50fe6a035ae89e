"""`ivr loadtest`: N simulated Exotel calls, C at a time, through the webhooks of a running API.

Each call is `ivr call`'s simulator (`cli.call.SimulatedCall`) walking Exotel's universal app
as the carrier would (EXOTEL.md): Passthru, the applet its `select` names (greeting as HEAD +
GET, gather, connect; a record or hangup fetches nothing), a think time like a caller listening
to the prompt, then Passthru again with what the applet produced (`digits="2"`,
`DialCallStatus`, `RecordingUrl`), until `hangup`. No status callback: Exotel sends none for
inbound flows.

What is measured: only the Passthru hits, because only they advance the workflow; the first one
(which starts it) apart from the later ones. Applet fetches are counted, not mixed into the turn
latencies. A failed request (non-2xx, exception, timeout) is an error and ends that simulated
call; it is not a latency sample. A fallback is a turn the API answered with its budget hold
(`X-IVR-Fallback: 1` on the Passthru, or a greeting saying "Please stay on the line.").

`--baseline` then runs, in the same process and with the same shape (N calls, C concurrent, same
think time, the real calls' mean turns per call), the raw Temporal limit: `bench.baseline`, a
workflow answering one update per turn (update-with-start, then updates), its worker spawned in
its own process on a unique task queue of the same Temporal server. The baseline runs after the
real run, and the report gives ours/baseline ratios: on a shared box only a ratio measured in
one run means anything.

Percentiles are nearest-rank (the smallest sample with at least p% of the samples at or below
it): always a latency that was really observed, no interpolation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from cli.main import app
from core.config import PROJECT_ROOT

if TYPE_CHECKING:
    import httpx
    from rich.console import Console
    from temporalio.client import Client

# The API's budget hold (api.call_gateway.HOLD_TEXT; a test keeps the two equal).
HOLD_TEXT = "Please stay on the line."
FALLBACK_HEADER = "X-IVR-Fallback"  # set by the Exotel adapter on a budget hold
KEEPALIVE_EXPIRY_S = 2.0
DEFAULT_CALLED = "+911234567890"  # as `ivr call`: a number no flow claims, the default flow
BASELINE_ORDER = "baseline ran after the real run, on the same Temporal server"


# --------------------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the ceil(p/100 * n)-th smallest sample; None when empty.

    The rank is computed in exact rational arithmetic: 0.95 * 100 in floats is
    95.00000000000001, whose ceiling would wrongly pick the 96th sample.
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    if not samples:
        return None
    ordered = sorted(samples)
    rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


@dataclass
class Recorder:
    """Everything one phase (the real run or the baseline) observed."""

    first_ms: list[float] = field(default_factory=list)
    later_ms: list[float] = field(default_factory=list)
    applet_ms: list[float] = field(default_factory=list)  # per applet step
    applet_fetches: int = 0  # requests: a greeting is HEAD + GET
    errors: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    completed_calls: int = 0  # reached hangup (or their last turn, for the baseline)
    failed_calls: int = 0  # ended by an error
    capped_calls: int = 0  # hit --max-turns without hanging up
    turns_per_call: list[int] = field(default_factory=list)  # completed calls only
    started: float | None = None
    ended: float | None = None

    def turn(self, *, first: bool, elapsed_ms: float) -> None:
        (self.first_ms if first else self.later_ms).append(elapsed_ms)

    @property
    def ended_calls(self) -> int:
        return self.completed_calls + self.failed_calls + self.capped_calls

    @property
    def duration_s(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(self.ended - self.started, 0.0)

    def mean_turns_per_call(self) -> float | None:
        return statistics.fmean(self.turns_per_call) if self.turns_per_call else None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def timing(first_ms: Sequence[float], later_ms: Sequence[float]) -> dict[str, float | None]:
    """The timing keys shared by the real run and the baseline (p50Ms... = later turns)."""
    return {
        "p50Ms": _ms(percentile(later_ms, 50)),
        "p95Ms": _ms(percentile(later_ms, 95)),
        "p99Ms": _ms(percentile(later_ms, 99)),
        "maxMs": _ms(max(later_ms, default=None)),
        "firstTurnP50Ms": _ms(percentile(first_ms, 50)),
        "firstTurnP95Ms": _ms(percentile(first_ms, 95)),
        "firstTurnP99Ms": _ms(percentile(first_ms, 99)),
        "firstTurnMaxMs": _ms(max(first_ms, default=None)),
    }


def summarize(rec: Recorder, *, calls: int, budget_ms: float | None = None) -> dict[str, Any]:
    """One phase as the JSON object `--json` prints (camelCase keys)."""
    duration = rec.duration_s
    turns = len(rec.first_ms) + len(rec.later_ms)
    mean_turns = rec.mean_turns_per_call()
    summary: dict[str, Any] = {
        "calls": calls,
        "completedCalls": rec.completed_calls,
        "failedCalls": rec.failed_calls,
        "cappedCalls": rec.capped_calls,
        "unfinishedCalls": calls - rec.ended_calls,
        "durationS": round(duration, 2),
        "callsPerSecond": round(rec.completed_calls / duration, 2) if duration else None,
        "turns": turns,
        "firstTurns": len(rec.first_ms),
        "laterTurns": len(rec.later_ms),
        "turnsPerSecond": round(turns / duration, 1) if duration else None,
        "turnsPerCall": round(mean_turns, 2) if mean_turns is not None else None,
        **timing(rec.first_ms, rec.later_ms),
        "appletFetches": rec.applet_fetches,
        "appletP99Ms": _ms(percentile(rec.applet_ms, 99)),
        "errors": sum(rec.errors.values()),
        "errorsByKind": dict(sorted(rec.errors.items())),
        "fallbacks": rec.fallbacks,
    }
    if budget_ms is not None:
        summary["overBudgetTurns"] = sum(
            1 for ms in (*rec.first_ms, *rec.later_ms) if ms > budget_ms
        )
    return summary


RATIO_KEYS = {
    "firstTurnP50": "firstTurnP50Ms",
    "firstTurnP99": "firstTurnP99Ms",
    "p50": "p50Ms",
    "p99": "p99Ms",
}


def ratios(ours: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, float | None]:
    """ours / baseline for the headline percentiles; None when either side has no samples."""
    result: dict[str, float | None] = {}
    for name, key in RATIO_KEYS.items():
        mine, base = ours.get(key), baseline.get(key)
        result[name] = round(mine / base, 2) if mine is not None and base else None
    return result


# --------------------------------------------------------------------------- safety


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_loopback_url(url: str) -> str:
    """The API base URL without a trailing slash, or ValueError unless it is on loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _is_loopback(parts.hostname):
        raise ValueError(f"{url!r}: the load test only targets http(s) on loopback (127.0.0.1)")
    return url.rstrip("/")


def require_loopback_address(address: str) -> str:
    """A Temporal `host:port` on loopback, or ValueError."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    if not _is_loopback(host):
        raise ValueError(f"{address!r}: the load test only targets a Temporal server on loopback")
    return address


# --------------------------------------------------------------------------- Exotel calls


@dataclass(frozen=True)
class ExotelTarget:
    base_url: str
    token: str


@dataclass(frozen=True)
class CallPlan:
    """What every simulated caller does."""

    digits: tuple[str, ...] = ("2",)  # one per gather, in order; then nothing is pressed
    think_s: float = 1.0
    timeout_s: float = 10.0
    max_turns: int = 40
    called: str = DEFAULT_CALLED

    def call_bound_s(self) -> float:
        """A hard ceiling for one call: every turn at its timeouts, plus the think times."""
        return self.max_turns * (self.think_s + 4 * self.timeout_s) + self.timeout_s


def _caller_number(index: int) -> str:
    # Exotel sends it as 0XXXXXXXXXX (the simulator does); 98... is a valid mobile range.
    return f"+9198{index % 10**8:08d}"


class _CallFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_HTTP_STATUS = re.compile(r"^\w+ answered (\d{3})\b")


def error_kind(message: str | None) -> str:
    """A short bucket for the simulator's error text: http_503, timeout, exception:X, bad_reply."""
    text = message or ""
    if match := _HTTP_STATUS.match(text):
        return f"http_{match.group(1)}"
    name = text.split(":", 1)[0].strip()
    if "Timeout" in name:
        return "timeout"
    if name.isidentifier() and name[:1].isupper() and ":" in text:
        return f"exception:{name}"
    return "bad_reply"  # the API answered 2xx with something a carrier could not run


def is_fallback(heard: Sequence[str]) -> bool:
    """The budget hold: the API had no answer from the workflow within its webhook budget."""
    # The whole line, exactly: a flow's own prompt may well say "please stay on the line for…".
    return any(line.strip() == HOLD_TEXT for line in heard)


class FallbackMarks:
    """`X-IVR-Fallback: 1` on each Passthru answer, per call, in order (the simulator's turns
    don't keep headers, so a response hook on the shared client notes them)."""

    def __init__(self) -> None:
        self._marks: dict[str, list[bool]] = {}

    def attach(self, client: httpx.AsyncClient | LightClient) -> None:
        if isinstance(client, LightClient):
            client.on_response.append(self._on_light_response)
            return
        hooks = client.event_hooks
        hooks["response"] = [*hooks.get("response", []), self._on_response]
        client.event_hooks = hooks

    async def _on_response(self, response: httpx.Response) -> None:
        url = response.request.url
        if url.path.endswith("/passthru"):
            sid = url.params.get("CallSid", "")
            marked = response.headers.get(FALLBACK_HEADER, "").strip() == "1"
            self._marks.setdefault(sid, []).append(marked)

    def _on_light_response(
        self, url: str, params: dict[str, str], response: _LightResponse
    ) -> None:
        if url.endswith("/passthru"):
            marked = response.headers.get(FALLBACK_HEADER, "").strip() == "1"
            self._marks.setdefault(params.get("CallSid", ""), []).append(marked)

    def take(self, call_sid: str) -> list[bool]:
        """The marks of one call's Passthru answers (turn n is index n - 1); forgets them."""
        return self._marks.pop(call_sid, [])


async def exotel_call(
    client: httpx.AsyncClient | LightClient,
    target: ExotelTarget,
    plan: CallPlan,
    rec: Recorder,
    *,
    call_sid: str,
    caller: str,
    marks: FallbackMarks | None = None,
) -> None:
    """One caller, Passthru to hangup, through `ivr call`'s simulator; results go into `rec`."""
    from cli.call import Outcome, SimulatedCall

    call = SimulatedCall(
        target.base_url,
        target.token,
        caller=caller,
        called=plan.called,
        call_sid=call_sid,
        digits=plan.digits,
        # Exotel sends no end-of-call callback for inbound flows: neither do we.
        send_status=False,
        think_s=plan.think_s,
        max_turns=plan.max_turns,
        timeout_s=plan.timeout_s,
        client=client,
    )
    try:
        async with asyncio.timeout(plan.call_bound_s()):
            result = await call.run()
    except TimeoutError:
        outcome, error, turns = Outcome.error, "Timeout: call bound", call.turns
    else:
        outcome, error, turns = result.outcome, result.error, result.turns
    # Only Passthru hits advance the workflow; a failed one never became a Turn.
    headers = marks.take(call_sid) if marks is not None else []
    for turn in turns:
        rec.turn(first=turn.first, elapsed_ms=turn.ms)
        if turn.applet_ms is not None:
            rec.applet_ms.append(turn.applet_ms)
            rec.applet_fetches += 2 if turn.applet == "say" else 1  # greeting: HEAD + GET
        marked = 0 < turn.turn <= len(headers) and headers[turn.turn - 1]
        rec.fallbacks += marked or (turn.applet == "say" and is_fallback(turn.heard))
    if outcome == Outcome.completed:
        rec.completed_calls += 1
        rec.turns_per_call.append(len(turns))
    elif outcome == Outcome.turn_limit:
        rec.capped_calls += 1
    else:
        rec.errors[error_kind(error)] += 1
        rec.failed_calls += 1


class _LightResponse:
    """The part of an httpx.Response the simulator reads."""

    __slots__ = ("headers", "status_code", "text")

    def __init__(self, status_code: int, text: str, headers: Any) -> None:
        self.status_code = status_code
        self.text = text
        self.headers = headers

    @property
    def content(self) -> bytes:
        return self.text.encode()

    def json(self) -> Any:
        return json.loads(self.text)


class LightClient:
    """aiohttp behind the one `request` call the simulator makes.

    The generator shares the machine with the stack it measures, and httpx costs it about
    three times the CPU per request that aiohttp does: every millisecond the generator spends
    is one the API, worker and Temporal server do not get. Transport failures come out as
    httpx errors, so the simulator reports them exactly as before."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.on_response: list[Callable[[str, dict[str, str], _LightResponse], None]] = []

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        json: Any = None,
    ) -> _LightResponse:
        import aiohttp
        import httpx
        from yarl import URL

        try:
            async with self.session.request(
                method, URL(url, encoded=True), params=params, headers=headers, data=data,
                json=json,
            ) as got:
                text = await got.text()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within the timeout: {url}") from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}") from exc
        response = _LightResponse(got.status, text, got.headers)
        for hook in self.on_response:
            hook(url, params or {}, response)
        return response

    async def get(self, url: str, **kwargs: Any) -> _LightResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> _LightResponse:
        return await self.request("POST", url, **kwargs)


@contextlib.asynccontextmanager
async def light_client(concurrency: int, timeout_s: float) -> AsyncIterator[LightClient]:
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=concurrency * 2, keepalive_timeout=KEEPALIVE_EXPIRY_S, use_dns_cache=True
    )
    # trust_env=False (the default): no proxy from the environment may carry loopback traffic.
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as session:
        yield LightClient(session)


@contextlib.asynccontextmanager
async def _http_client(concurrency: int, timeout_s: float) -> AsyncIterator[httpx.AsyncClient]:
    import httpx

    # Idle connections expire before uvicorn's 5 s keep-alive does: reusing one the server is
    # closing at that moment fails with a ReadError that is the generator's, not the API's.
    limits = httpx.Limits(
        max_connections=concurrency * 2,
        max_keepalive_connections=concurrency,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    # trust_env=False: no proxy from the environment may carry loopback traffic elsewhere.
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s, trust_env=False) as client:
        yield client


async def _run_lanes(
    calls: int,
    concurrency: int,
    one_call: Callable[[int], Any],
    *,
    deadline_s: float,
    on_done: Callable[[], None],
) -> bool:
    """Run `one_call(i)` for i < calls, `concurrency` at a time; False if the deadline hit."""
    indexes = iter(range(calls))

    async def lane() -> None:
        for index in indexes:  # a shared iterator: each lane takes the next call
            await one_call(index)
            on_done()

    try:
        async with asyncio.timeout(deadline_s), asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, calls)):
                group.create_task(lane())
    except TimeoutError:
        return False
    return True


@dataclass
class Phase:
    recorder: Recorder
    finished: bool  # False if the run was stopped by its deadline


async def run_exotel_load(
    target: ExotelTarget,
    plan: CallPlan,
    *,
    calls: int,
    concurrency: int,
    deadline_s: float,
    warmup: int = 0,
    on_done: Callable[[], None] = lambda: None,
    client: httpx.AsyncClient | LightClient | None = None,
) -> Phase:
    """The real run: `calls` simulated Exotel calls (plus `warmup` unmeasured ones first)."""
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(light_client(concurrency, plan.timeout_s))
        marks = FallbackMarks()
        marks.attach(client)
        run = uuid.uuid4().hex[:8]
        for index in range(warmup):
            await exotel_call(
                client, target, plan, Recorder(),
                call_sid=f"lt{run}w{index}", caller=_caller_number(index), marks=marks,
            )  # fmt: skip
        rec = Recorder()

        async def one_call(index: int) -> None:
            await exotel_call(
                client, target, plan, rec,
                call_sid=f"lt{run}c{index}", caller=_caller_number(index), marks=marks,
            )  # fmt: skip

        rec.started = time.perf_counter()
        finished = await _run_lanes(
            calls, concurrency, one_call, deadline_s=deadline_s, on_done=on_done
        )
        rec.ended = time.perf_counter()
    return Phase(rec, finished)


# --------------------------------------------------------------------------- baseline


def baseline_module() -> Any:
    """bench.baseline; `bench/` lives at the project root, outside the installed packages."""
    try:
        import bench.baseline as module
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", "bench.baseline"):
            raise
        sys.path.append(str(PROJECT_ROOT))
        import bench.baseline as module
    return module


async def baseline_call(
    client: Client,
    task_queue: str,
    rec: Recorder,
    *,
    workflow_id: str,
    turns: int,
    think_s: float,
    timeout_s: float,
) -> None:
    """One baseline call: update-with-start for the first turn, plain updates after."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    bench = baseline_module()
    rpc_timeout = timedelta(seconds=timeout_s)
    handle = client.get_workflow_handle(workflow_id)
    operation = WithStartWorkflowOperation(
        bench.BaselineCall.run,
        bench.BaselineStart(call_id=workflow_id),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        execution_timeout=bench.EXECUTION_TIMEOUT,
    )
    # A failed or cancelled first turn leaves its error on the operation's handle future;
    # read it, or asyncio logs "Future exception was never retrieved" at exit.
    _settle_quietly(getattr(operation, "_workflow_handle", None))
    try:
        for n in range(1, turns + 1):
            turn = bench.Turn(n=n, last=n == turns)
            began = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    if n == 1:
                        await client.execute_update_with_start_workflow(
                            bench.BaselineCall.advance,
                            turn,
                            start_workflow_operation=operation,
                            id=f"{workflow_id}-t{n}",
                            rpc_timeout=rpc_timeout,
                        )
                    else:
                        await handle.execute_update(
                            bench.BaselineCall.advance,
                            turn,
                            id=f"{workflow_id}-t{n}",
                            rpc_timeout=rpc_timeout,
                        )
            except TimeoutError:
                raise _CallFailed("timeout") from None
            except Exception as exc:  # any SDK/RPC failure is an error of this call
                raise _CallFailed(f"exception:{type(exc).__name__}") from None
            rec.turn(first=n == 1, elapsed_ms=(time.perf_counter() - began) * 1000)
            if n < turns and think_s:
                await asyncio.sleep(think_s)
    except _CallFailed as failure:
        rec.errors[failure.kind] += 1
        rec.failed_calls += 1
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await handle.terminate(reason="loadtest: call failed")
        return
    rec.completed_calls += 1
    rec.turns_per_call.append(turns)


def _settle_quietly(future: object) -> None:
    if isinstance(future, asyncio.Future):
        future.add_done_callback(lambda done: done.cancelled() or done.exception())


async def run_baseline(
    client: Client,
    task_queue: str,
    *,
    calls: int,
    concurrency: int,
    turns: int,
    think_s: float,
    timeout_s: float,
    deadline_s: float,
    on_done: Callable[[], None] = lambda: None,
) -> Phase:
    """The raw-Temporal run against a worker already polling `task_queue`."""
    run = uuid.uuid4().hex[:8]
    rec = Recorder()

    async def one_call(index: int) -> None:
        await baseline_call(
            client, task_queue, rec,
            workflow_id=f"bench-{run}-{index}", turns=turns, think_s=think_s, timeout_s=timeout_s,
        )  # fmt: skip

    rec.started = time.perf_counter()
    finished = await _run_lanes(
        calls, concurrency, one_call, deadline_s=deadline_s, on_done=on_done
    )
    rec.ended = time.perf_counter()
    return Phase(rec, finished)


class BaselineWorkerError(RuntimeError):
    """The baseline worker process did not start or did not answer."""


@contextlib.asynccontextmanager
async def baseline_worker(
    client: Client,
    *,
    address: str,
    log_dir: Path,
    warmup: int = 1,
    ready_timeout_s: float = 60.0,
) -> AsyncIterator[str]:
    """Spawn `python -m bench.baseline_worker` on a unique task queue; yield the queue.

    Ready means it answered `warmup` (at least one) unmeasured calls: a fresh worker pays its
    one-off costs (sandbox, workflow validation) there, not in the measured run.
    """
    from cli.stack import Supervisor

    task_queue = f"bench-baseline-{uuid.uuid4().hex[:12]}"
    argv = [
        sys.executable, "-m", "bench.baseline_worker",
        "--address", address, "--namespace", client.namespace, "--task-queue", task_queue,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with Supervisor(log_dir) as sup:
        child = sup.spawn("bench-baseline-worker", argv, env=env, cwd=PROJECT_ROOT)
        rec = Recorder()
        warm = asyncio.ensure_future(
            _warm_up(client, task_queue, rec, count=max(warmup, 1), timeout_s=ready_timeout_s)
        )
        try:
            while not warm.done():
                await asyncio.wait({warm}, timeout=0.25)
                if not child.running:
                    raise BaselineWorkerError(f"baseline worker stopped: {child.failure()}")
            warm.result()
        finally:
            if not warm.done():
                warm.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await warm
        if rec.errors:
            raise BaselineWorkerError(
                f"baseline worker did not answer its warm-up calls ({dict(rec.errors)}); "
                f"log: {child.log_path}"
            )
        yield task_queue


async def _warm_up(
    client: Client, task_queue: str, rec: Recorder, *, count: int, timeout_s: float
) -> None:
    run = uuid.uuid4().hex[:8]
    for index in range(count):
        await baseline_call(
            client, task_queue, rec,
            workflow_id=f"bench-warmup-{run}-{index}", turns=2, think_s=0, timeout_s=timeout_s,
        )  # fmt: skip


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """nproc, CPU model and RAM, for bench/RESULTS.md."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_gib: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
                break
    return {"nproc": os.cpu_count(), "cpu": model, "ramGiB": ram_gib, "loadAvg1m": _load_1m()}


def _load_1m() -> float | None:
    """How busy the box already was: figures from a loaded machine are not comparable."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# --------------------------------------------------------------------------- reporting


def render_table(report: Mapping[str, Any], console: Console) -> None:
    """The human report: our figures and, if measured, the baseline's and the ratios."""
    from rich.table import Table

    ours = report.get("ours")
    base = report.get("baseline")
    table = Table(title="ivr loadtest", title_justify="left")
    table.add_column("metric")
    if ours is not None:
        table.add_column("API (Exotel webhooks)", justify="right")
    if base is not None:
        table.add_column("raw Temporal baseline", justify="right")
    if ours is not None and base is not None:
        table.add_column("ratio", justify="right")
    ratio = report.get("ratios") or {}

    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.1f}" if value >= 100 else f"{value:,.2f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    rows = [
        ("calls", "calls", None),
        ("completed calls", "completedCalls", None),
        ("calls/s", "callsPerSecond", None),
        ("turns", "turns", None),
        ("turns/s", "turnsPerSecond", None),
        ("turns per call", "turnsPerCall", None),
        ("first turn p50 ms", "firstTurnP50Ms", "firstTurnP50"),
        ("first turn p95 ms", "firstTurnP95Ms", None),
        ("first turn p99 ms", "firstTurnP99Ms", "firstTurnP99"),
        ("first turn max ms", "firstTurnMaxMs", None),
        ("later turns p50 ms", "p50Ms", "p50"),
        ("later turns p95 ms", "p95Ms", None),
        ("later turns p99 ms", "p99Ms", "p99"),
        ("later turns max ms", "maxMs", None),
        ("applet fetches", "appletFetches", None),
        ("applet step p99 ms", "appletP99Ms", None),
        ("errors", "errors", None),
        ("fallbacks", "fallbacks", None),
        ("turns over budget", "overBudgetTurns", None),
        ("unfinished calls", "unfinishedCalls", None),
    ]
    for label, key, ratio_key in rows:
        cells = [label]
        if ours is not None:
            cells.append(fmt(ours.get(key)))
        if base is not None:
            cells.append(fmt(base.get(key)) if key != "appletFetches" else "-")
        if ours is not None and base is not None:
            value = ratio.get(ratio_key) if ratio_key else None
            cells.append(f"{value:.2f}x" if value is not None else "")
        table.add_row(*cells)
    console.print(table)
    errors = {
        name: phase["errorsByKind"]
        for name, phase in (("API", ours), ("baseline", base))
        if phase and phase["errorsByKind"]
    }
    if errors:
        console.print(f"errors by kind: {errors}")
    shape = report["shape"]
    console.print(
        f"{shape['concurrency']} concurrent, think {shape['thinkS']} s; percentiles are "
        "nearest-rank over successful turns; 'later turns' = every turn after a call's first."
    )
    if base is not None:
        order = report.get("order", "baseline only")
        console.print(
            f"{order}; {base['calls']} calls x {shape['baselineTurnsPerCall']} turns "
            "(update-with-start, then updates), its worker in its own process."
        )
    machine = report.get("machine")
    if machine:
        console.print(
            f"machine: {machine['nproc']} x {machine['cpu']}, {machine['ramGiB']} GiB RAM; "
            f"load average (1 min) {machine['loadAvg1m']} at start, "
            f"{machine.get('loadAvg1mAtEnd')} at end"
        )
    if not report.get("finished", True):
        console.print("[red]stopped by --max-duration before every call ended[/red]")


# --------------------------------------------------------------------------- command


async def _loadtest(
    *,
    api: str | None,
    token: str,
    temporal_address: str,
    namespace: str,
    calls: int,
    concurrency: int,
    plan: CallPlan,
    baseline: bool,
    baseline_only: bool,
    baseline_turns: int,
    warmup: int,
    deadline_s: float,
    budget_ms: float,
    log_dir: Path,
    progress_console: Console | None,
) -> dict[str, Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    report: dict[str, Any] = {
        "shape": {
            "calls": calls,
            "concurrency": concurrency,
            "thinkS": plan.think_s,
            "digits": list(plan.digits),
            "warmupCalls": warmup,
            "baselineTurnsPerCall": None,
        },
        "percentiles": "nearest-rank",
        "machine": machine_info(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "finished": True,
    }
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=progress_console,
        disable=progress_console is None,
        transient=True,
    )
    with progress:
        if not baseline_only:
            assert api is not None
            await _preflight(api, plan.timeout_s)
            task = progress.add_task("API calls", total=calls)
            phase = await run_exotel_load(
                ExotelTarget(api, token), plan,
                calls=calls, concurrency=concurrency, deadline_s=deadline_s, warmup=warmup,
                on_done=lambda: progress.advance(task),
            )  # fmt: skip
            report["ours"] = summarize(phase.recorder, calls=calls, budget_ms=budget_ms)
            report["finished"] = phase.finished
            measured = phase.recorder.mean_turns_per_call()
            if measured is not None:
                baseline_turns = max(1, round(measured))
        if baseline or baseline_only:
            from temporalio.client import Client

            report["shape"]["baselineTurnsPerCall"] = baseline_turns
            if "ours" in report:
                report["order"] = BASELINE_ORDER
            client = await Client.connect(temporal_address, namespace=namespace)
            setup = progress.add_task("baseline worker starting", total=None)
            async with baseline_worker(
                client, address=temporal_address, log_dir=log_dir, warmup=warmup
            ) as task_queue:
                progress.remove_task(setup)
                task = progress.add_task("baseline calls", total=calls)
                phase = await run_baseline(
                    client, task_queue,
                    calls=calls, concurrency=concurrency, turns=baseline_turns,
                    think_s=plan.think_s, timeout_s=plan.timeout_s, deadline_s=deadline_s,
                    on_done=lambda: progress.advance(task),
                )  # fmt: skip
            report["baseline"] = summarize(phase.recorder, calls=calls, budget_ms=budget_ms)
            report["finished"] = report["finished"] and phase.finished
    if "ours" in report and "baseline" in report:
        report["ratios"] = ratios(report["ours"], report["baseline"])
    report["machine"]["loadAvg1mAtEnd"] = _load_1m()
    return report


async def _preflight(api: str, timeout_s: float) -> None:
    async with _http_client(1, timeout_s) as client:
        try:
            response = await client.get(f"{api}/health", timeout=min(timeout_s, 5.0))
        except Exception as exc:
            raise ValueError(
                f"the API at {api} does not answer ({type(exc).__name__}); is `ivr dev` running?"
            ) from exc
    if response.status_code >= 500:
        raise ValueError(f"the API at {api} is unhealthy: /health answered {response.status_code}")


def flatten(report: Mapping[str, Any]) -> dict[str, Any]:
    """The `--json` object: our figures at the top level, the baseline nested, then context."""
    out: dict[str, Any] = {}
    if "ours" in report:
        out.update(report["ours"])
    else:
        out["mode"] = "baseline-only"
    for key in (
        "baseline",
        "ratios",
        "order",
        "shape",
        "percentiles",
        "finished",
        "machine",
        "date",
    ):
        if key in report:
            out[key] = report[key]
    return out


@app.command()
def loadtest(
    calls: Annotated[int, typer.Option(min=1, max=100_000, help="Calls to place.")] = 100,
    concurrency: Annotated[
        int, typer.Option(min=1, max=2_000, help="Calls in progress at once.")
    ] = 10,
    think: Annotated[
        float, typer.Option(min=0, max=60, help="Seconds a caller waits between turns.")
    ] = 1.0,
    digits: Annotated[
        str,
        typer.Option(help="Keys for successive gathers, comma-separated; then nothing is pressed."),
    ] = "2",
    api: Annotated[
        str | None,
        typer.Option(
            help="API base URL (loopback only) (default: http://127.0.0.1:$IVR_API_PORT)."
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Webhook token (default: $IVR_WEBHOOK_TOKEN).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    baseline: Annotated[
        bool,
        typer.Option("--baseline", help="Also run the raw-Temporal baseline, same shape, after."),
    ] = False,
    baseline_only: Annotated[
        bool,
        typer.Option("--baseline-only", help="Run only the baseline (no API needed); see --turns."),
    ] = False,
    turns: Annotated[
        int, typer.Option(min=1, max=200, help="Turns per baseline call with --baseline-only.")
    ] = 8,
    temporal: Annotated[
        str | None,
        typer.Option(help="Temporal host:port for the baseline (default: the one the API uses)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=60, help="Seconds before one request is an error.")
    ] = 10.0,
    max_turns: Annotated[
        int, typer.Option(min=1, max=200, help="Passthru turns after which a call is dropped.")
    ] = 40,
    max_duration: Annotated[
        float, typer.Option(min=1, max=24 * 3600, help="Seconds each phase may run at most.")
    ] = 1800.0,
    warmup: Annotated[
        int, typer.Option(min=0, max=100, help="Unmeasured calls before each phase.")
    ] = 1,
    called: Annotated[str, typer.Option(help="The ExoPhone called (CallTo).")] = DEFAULT_CALLED,
) -> None:
    """Place N simulated Exotel calls through the API; optionally against raw Temporal."""
    from rich.console import Console

    from cli.main import fail, load_settings
    from cli.stack import logs_dir
    from core.temporal import temporal_target

    settings = load_settings()
    try:
        api_url = None
        if not baseline_only:
            api_url = require_loopback_url(api or f"http://127.0.0.1:{settings.api_port}")
        temporal_address = (
            temporal or os.environ.get("TEMPORAL_ADDRESS") or temporal_target(settings)
        )
        if baseline or baseline_only:
            require_loopback_address(temporal_address)
    except ValueError as exc:
        fail(str(exc), code=2)
    plan = CallPlan(
        digits=tuple(d.strip() for d in digits.split(",") if d.strip()),
        think_s=think,
        timeout_s=timeout,
        max_turns=max_turns,
        called=called,
    )
    stderr = Console(stderr=True)
    try:
        report = asyncio.run(
            _loadtest(
                api=api_url,
                token=token or settings.webhook_token.get_secret_value(),
                temporal_address=temporal_address,
                namespace=settings.temporal_namespace,
                calls=calls,
                concurrency=concurrency,
                plan=plan,
                baseline=baseline,
                baseline_only=baseline_only,
                baseline_turns=turns,
                warmup=warmup,
                deadline_s=max_duration,
                budget_ms=settings.webhook_budget_ms,
                log_dir=logs_dir(settings),
                progress_console=None if json_out and not stderr.is_terminal else stderr,
            )
        )
    except (ValueError, BaselineWorkerError, RuntimeError) as exc:
        fail(str(exc))
    if json_out:
        typer.echo(json.dumps(flatten(report)))
    else:
        render_table(report, Console())
    phases = [report[k] for k in ("ours", "baseline") if k in report]
    if not report["finished"] or any(p["errors"] or p["fallbacks"] for p in phases):
        raise typer.Exit(1)
