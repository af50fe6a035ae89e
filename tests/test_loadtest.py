"""`ivr loadtest`: statistics, the report's shape, the Exotel turn driver, the Temporal baseline."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from temporalio.client import Client

from cli.loadtest import (
    HOLD_TEXT,
    BaselineWorkerError,
    CallPlan,
    ExotelTarget,
    Recorder,
    baseline_worker,
    error_kind,
    flatten,
    is_fallback,
    percentile,
    ratios,
    render_table,
    require_loopback_address,
    require_loopback_url,
    run_exotel_load,
    summarize,
)

TIMING_KEYS = {
    "p50Ms",
    "p95Ms",
    "p99Ms",
    "firstTurnP50Ms",
    "firstTurnP95Ms",
    "firstTurnP99Ms",
}
REQUIRED_KEYS = {"calls", "callsPerSecond", "turns", "errors", "fallbacks", *TIMING_KEYS}


# --------------------------------------------------------------------------- percentiles


def test_nearest_rank_on_1_to_100_picks_the_rank_itself() -> None:
    samples = list(range(100, 0, -1))  # unsorted on purpose
    assert percentile(samples, 50) == 50
    assert percentile(samples, 95) == 95  # a float rank (95.000...01) would give 96
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100


def test_nearest_rank_small_samples() -> None:
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2  # ceil(0.5 * 4) = 2nd
    assert percentile([1, 2, 3, 4], 51) == 3
    assert percentile([1, 2, 3, 4], 99) == 4
    assert percentile([15, 20, 35, 40, 50], 40) == 20  # the textbook nearest-rank example
    assert percentile([], 99) is None


def test_percentile_is_always_an_observed_value_and_monotonic() -> None:
    rng = random.Random(4)
    samples = [rng.expovariate(1 / 40) for _ in range(537)]
    values = [percentile(samples, p) for p in (1, 10, 50, 90, 95, 99, 99.9, 100)]
    assert all(v in samples for v in values)
    assert values == sorted(values)
    assert values[-1] == max(samples)


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_percentile_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], p)


# --------------------------------------------------------------------------- report shape


def _recorder(first: list[float], later: list[float], **kw: Any) -> Recorder:
    rec = Recorder(first_ms=first, later_ms=later, **kw)
    rec.started, rec.ended = 100.0, 110.0
    return rec


def test_summary_keys_counts_and_split_of_first_and_later_turns() -> None:
    rec = _recorder(
        [300.0, 500.0], [10.0, 20.0, 30.0, 2500.0], completed_calls=2, turns_per_call=[3, 3]
    )
    rec.errors["http_500"] += 1
    rec.fallbacks = 1
    rec.applet_ms = [1.0, 2.0]
    rec.applet_fetches = 2
    summary = summarize(rec, calls=3, budget_ms=2000)
    assert REQUIRED_KEYS <= summary.keys()
    assert summary["turns"] == 6
    assert (summary["firstTurns"], summary["laterTurns"]) == (2, 4)
    assert summary["firstTurnP50Ms"] == 300.0
    assert summary["firstTurnP99Ms"] == 500.0
    assert summary["p50Ms"] == 20.0  # later turns only: the first turns are not mixed in
    assert summary["p99Ms"] == 2500.0
    assert summary["callsPerSecond"] == 0.2  # 2 completed in 10 s
    assert summary["turnsPerCall"] == 3
    assert summary["errors"] == 1 and summary["errorsByKind"] == {"http_500": 1}
    assert summary["fallbacks"] == 1
    assert summary["appletFetches"] == 2
    assert summary["overBudgetTurns"] == 1
    assert summary["unfinishedCalls"] == 1  # 3 asked, 2 ended
    json.dumps(summary)  # serialisable as is


def test_empty_phase_has_null_percentiles_not_zeros() -> None:
    summary = summarize(Recorder(), calls=0)
    assert all(summary[key] is None for key in TIMING_KEYS)
    assert summary["callsPerSecond"] is None


def test_ratios_are_ours_over_baseline_and_none_without_samples() -> None:
    ours = {"firstTurnP99Ms": 600.0, "p99Ms": 90.0, "p50Ms": 20.0, "firstTurnP50Ms": None}
    base = {"firstTurnP99Ms": 400.0, "p99Ms": 60.0, "p50Ms": 0.0, "firstTurnP50Ms": 5.0}
    assert ratios(ours, base) == {
        "firstTurnP99": 1.5,
        "p99": 1.5,
        "p50": None,
        "firstTurnP50": None,
    }


def _report() -> dict[str, Any]:
    ours = summarize(_recorder([300.0], [20.0], completed_calls=1, turns_per_call=[2]), calls=1)
    base = summarize(_recorder([200.0], [10.0], completed_calls=1, turns_per_call=[2]), calls=1)
    return {
        "ours": ours,
        "baseline": base,
        "ratios": ratios(ours, base),
        "order": "baseline ran after the real run",
        "shape": {"concurrency": 1, "thinkS": 0.0, "baselineTurnsPerCall": 2},
        "finished": True,
    }


def test_json_object_has_our_keys_on_top_and_the_baseline_nested() -> None:
    out = json.loads(json.dumps(flatten(_report())))
    assert REQUIRED_KEYS <= out.keys()
    assert REQUIRED_KEYS <= out["baseline"].keys()
    assert out["ratios"]["firstTurnP99"] == 1.5
    assert out["ratios"]["p99"] == 2.0
    assert "baseline ran after" in out["order"]


def test_baseline_only_json_says_so() -> None:
    report = _report()
    del report["ours"], report["ratios"], report["order"]
    out = flatten(report)
    assert out["mode"] == "baseline-only"
    assert REQUIRED_KEYS <= out["baseline"].keys()


def test_table_shows_both_sides_and_the_ratio() -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    render_table(_report(), console)
    text = console.export_text()
    assert "raw Temporal baseline" in text
    assert "first turn p99 ms" in text
    assert "1.50x" in text and "2.00x" in text


# --------------------------------------------------------------------------- safety


def test_only_loopback_targets() -> None:
    assert require_loopback_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert require_loopback_url("http://localhost:8000")
    assert require_loopback_url("http://[::1]:8000")
    assert require_loopback_address("127.0.0.1:7233")
    for url in ("http://10.0.0.5:8000", "https://api.example.com", "ftp://127.0.0.1"):
        with pytest.raises(ValueError):
            require_loopback_url(url)
    with pytest.raises(ValueError):
        require_loopback_address("temporal.example.com:7233")


def test_hold_text_matches_the_api_fallback() -> None:
    gateway = pytest.importorskip("api.call_gateway", exc_type=ImportError)
    assert gateway.HOLD_TEXT == HOLD_TEXT


# --------------------------------------------------------------------------- Exotel driver


class FakeExotelApi:
    """A scripted universal app: say, gather, (hold), connect, record, hangup per call."""

    SCRIPT = ("say", "gather", "say", "connect", "record", "hangup")

    def __init__(self, *, fail_turn: int | None = None, hang_turn: int | None = None) -> None:
        self.turn: dict[str, int] = defaultdict(int)
        self.seen: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.fail_turn = fail_turn
        self.hang_turn = hang_turn
        self.applets: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        sid = query["CallSid"]
        assert path.startswith("/api/exotel/tok/")
        applet = path.rsplit("/", 1)[1]
        status, headers, body = 200, [(b"content-type", b"text/plain")], b""
        if applet == "passthru":
            n = self.turn[sid]
            self.turn[sid] += 1
            self.seen[sid].append(query)
            if self.hang_turn is not None and n == self.hang_turn:
                await asyncio.sleep(30)
            if n == self.fail_turn:
                status = 500
            script = self.SCRIPT if self.fail_turn != -1 else ("say",)
            select = script[min(n, len(script) - 1)]
            body = json.dumps({"select": select}).encode()
        else:
            self.applets.append(f"{scope['method']} {applet}")
            if applet == "greeting":
                hold = self.turn[sid] == 3  # the second say is the budget hold
                body = (HOLD_TEXT if hold else "Welcome to support.").encode()
            elif applet == "gather":
                body = json.dumps({"gather_prompt": {"text": "Press 2"}}).encode()
            elif applet == "connect":
                body = json.dumps({"destination": {"numbers": ["+919800000001"]}}).encode()
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _drive(api: FakeExotelApi, calls: int, plan: CallPlan) -> Recorder:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport) as client:
        phase = await run_exotel_load(
            ExotelTarget("http://127.0.0.1:8000", "tok"),
            plan,
            calls=calls,
            concurrency=2,
            deadline_s=30,
            client=client,
        )
    assert phase.finished
    return phase.recorder


async def test_driver_walks_the_exotel_loop_and_counts_what_it_should() -> None:
    api = FakeExotelApi()
    rec = await _drive(api, 3, CallPlan(digits=("2",), think_s=0))
    assert rec.completed_calls == 3 and not rec.errors
    assert len(rec.first_ms) == 3
    assert len(rec.later_ms) == 3 * 5  # six Passthru hits per call, the first apart
    assert rec.turns_per_call == [6, 6, 6]
    assert len(rec.applet_ms) == 3 * 4  # greeting, gather, greeting, connect; record fetches none
    per_call = ["HEAD greeting", "GET greeting", "GET gather", "GET connect"] * 3
    per_call += ["HEAD greeting", "GET greeting"] * 3  # the hold
    assert sorted(api.applets) == sorted(per_call)
    assert rec.applet_fetches == len(per_call)
    assert rec.fallbacks == 3  # one hold per call, found in the greeting text
    for hits in api.seen.values():
        assert hits[0]["Direction"] == "incoming"
        assert hits[0]["CallFrom"].startswith("0") and len(hits[0]["CallFrom"]) == 11
        assert "digits" not in hits[1]
        assert hits[2]["digits"] == '"2"'  # quoted, as Exotel sends it
        assert hits[4]["DialCallStatus"] == "completed"
        assert hits[4]["DialWhomNumber"] == "09800000001"
        assert hits[5]["RecordingUrl"].startswith("https://")
        # Each turn's parameters differ (the API derives update ids from them).
        assert len({hit["CurrentTime"] for hit in hits}) > 1
    assert len({hits[0]["CallSid"] for hits in api.seen.values()}) == 3


async def test_a_failed_turn_is_an_error_not_a_latency_sample_and_ends_the_call() -> None:
    rec = await _drive(FakeExotelApi(fail_turn=2), 2, CallPlan(think_s=0))
    assert rec.errors == {"http_500": 2}
    assert rec.failed_calls == 2 and rec.completed_calls == 0
    assert len(rec.first_ms) == 2 and len(rec.later_ms) == 2  # turns 0 and 1 of each


async def test_a_slow_turn_is_a_timeout_error() -> None:
    rec = await _drive(
        FakeExotelApi(hang_turn=1), 1, CallPlan(think_s=0, timeout_s=0.2, max_turns=3)
    )
    assert rec.errors == {"timeout": 1}
    assert rec.failed_calls == 1


async def test_a_call_that_never_hangs_up_is_capped() -> None:
    rec = await _drive(FakeExotelApi(fail_turn=-1), 1, CallPlan(think_s=0, max_turns=5))
    assert rec.capped_calls == 1 and not rec.errors
    assert len(rec.first_ms) + len(rec.later_ms) == 5


async def test_the_fallback_header_counts_once_per_turn() -> None:
    class HeaderApi(FakeExotelApi):
        SCRIPT = ("gather", "say", "say", "hangup")

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            async def marking(message: dict[str, Any]) -> None:
                passthru = scope["path"].endswith("/passthru")
                if message["type"] == "http.response.start" and passthru:
                    # Turns 2 and 3 (the greeting of turn 3 is the hold text as well).
                    if self.turn[_sid(scope)] in (2, 3):
                        message["headers"] = [*message["headers"], (b"x-ivr-fallback", b"1")]
                await send(message)

            await super().__call__(scope, receive, marking)

    rec = await _drive(HeaderApi(), 2, CallPlan(think_s=0))
    assert rec.completed_calls == 2
    assert rec.fallbacks == 2 * 2  # turn 3 has header and text: counted once


def _sid(scope: dict[str, Any]) -> str:
    return parse_qs(scope["query_string"].decode())["CallSid"][0]


def test_a_prompt_that_merely_mentions_staying_on_the_line_is_no_fallback() -> None:
    assert is_fallback(["Please stay on the line.", "https://x/silence/2.wav"])
    assert not is_fallback(["Please stay on the line for the next available engineer."])


def test_error_kinds_from_the_simulator_messages() -> None:
    assert error_kind("passthru answered 503: {...}") == "http_503"
    assert error_kind("ReadTimeout: timed out") == "timeout"
    assert error_kind("Timeout: call bound") == "timeout"
    assert error_kind("ConnectError: refused") == "exception:ConnectError"
    assert error_kind("passthru selected an unknown case 'dance'") == "bad_reply"
    assert error_kind(None) == "bad_reply"


# --------------------------------------------------------------------------- baseline


def _target(client: Client) -> str:
    return client.service_client.config.target_host


async def test_baseline_runs_for_real_and_reports_in_json(
    temporal_client: Client, tmp_path: Path
) -> None:
    """The whole command, as a user runs it: its own process, its own worker process."""
    argv = [
        sys.executable, "-c", "from cli.main import app; app(prog_name='ivr')",
        "loadtest", "--baseline-only", "--json",
        "--calls", "4", "--concurrency", "2", "--think", "0", "--turns", "3",
        "--temporal", _target(temporal_client),
    ]  # fmt: skip
    env = {
        "IVR_DATA_DIR": str(tmp_path),
        "TEMPORAL_NAMESPACE": temporal_client.namespace,
        "PATH": "/usr/bin:/bin",
    }
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=tmp_path,  # not the project root: `bench` must be found all the same
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    lines = stdout.decode().strip().splitlines()
    assert len(lines) == 1, stdout.decode()  # one JSON object, nothing else on stdout
    out = json.loads(lines[0])
    assert out["mode"] == "baseline-only"
    base = out["baseline"]
    assert REQUIRED_KEYS <= base.keys()
    assert base["calls"] == 4 and base["completedCalls"] == 4
    assert base["turns"] == 4 * 3
    assert (base["firstTurns"], base["laterTurns"]) == (4, 8)
    assert base["errors"] == 0
    assert all(base[key] is not None and base[key] > 0 for key in TIMING_KEYS)
    assert out["shape"]["baselineTurnsPerCall"] == 3
    assert (tmp_path / "logs" / "bench-baseline-worker.log").exists()


async def test_a_baseline_worker_that_cannot_start_is_reported_not_waited_for(
    temporal_client: Client, tmp_path: Path
) -> None:
    with pytest.raises(BaselineWorkerError, match="stopped"):
        async with baseline_worker(
            temporal_client, address="127.0.0.1:1", log_dir=tmp_path, ready_timeout_s=60
        ):
            pytest.fail("a worker that cannot connect must not be reported ready")


async def test_the_default_client_over_a_real_socket_counts_the_same() -> None:
    """Without an injected client the generator uses its aiohttp client (cheaper per request
    than httpx, on a machine it shares with the stack): same walk, same marks, same errors."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "api"))
    from api_helpers import serve

    def served(fake: FakeExotelApi) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":  # uvicorn's start-up and shut-down handshake
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            await fake(scope, receive, send)

        return serve(app)

    api = FakeExotelApi()
    async with served(api) as url:
        phase = await run_exotel_load(ExotelTarget(url, "tok"), CallPlan(digits=("2",), think_s=0),
                                      calls=2, concurrency=2, deadline_s=30)
        slow = FakeExotelApi(hang_turn=1)
        async with served(slow) as slow_url:
            timed_out = await run_exotel_load(
                ExotelTarget(slow_url, "tok"),
                CallPlan(think_s=0, timeout_s=0.2, max_turns=3), calls=1, concurrency=1,
                deadline_s=30,
            )
    rec = phase.recorder
    assert rec.completed_calls == 2 and not rec.errors
    assert rec.turns_per_call == [6, 6] and rec.fallbacks == 2
    assert rec.applet_fetches == 2 * 6
    for hits in api.seen.values():
        assert hits[2]["digits"] == '"2"'
    assert timed_out.recorder.errors == {"timeout": 1}
