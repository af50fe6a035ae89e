"""Live-event latency: from the workflow step to a connected Socket.IO client.

Places simulated calls through a running API (`ivr dev`, or any deployment) while a client
connected to /socket.io (in the flow's room) records when each `call:started`,
`flow:execution` and `call:completed` arrives. Every event carries `at`, the workflow time of
the step it reports (the visit's entry, the call's start or end), so the latency measured is
workflow step → activity → PostgreSQL commit → Redis PUBLISH → API bridge → client.

    .venv/bin/python -m bench.event_latency --calls 30 --concurrency 5
    .venv/bin/python -m bench.event_latency --api http://127.0.0.1:8000 --json

Reports p50/p95/max per event type and overall (target p95 < 100 ms). Same-host clocks only:
the client's receive time and the workflow's clock must be the same clock.

Note: mid-call visits are written in batches (CallWorkflow writes a call's first turn at once,
then every 12 visits, and the rest with the final record), so `flow:execution` for a later
node arrives when its batch is written: its latency from the node's entry includes the turns
in between. Those are reported apart (`flow:execution (batched)`) and not in the overall
figure, which measures the event path itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

import httpx
import socketio

from cli.call import SimulatedCall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "max_ms": round(max(values), 1) if values else float("nan"),
        "mean_ms": round(statistics.fmean(values), 1) if values else float("nan"),
    }


async def run_bench(
    api: str,
    webhook_token: str,
    access_token: str,
    *,
    calls: int = 20,
    concurrency: int = 5,
    digits: tuple[str, ...] = (),
    flow_id: int | None = None,
    settle_s: float = 3.0,
) -> dict[str, Any]:
    """Place `calls` simulated calls and measure event latency; returns the summary."""
    latencies: dict[str, list[float]] = defaultdict(list)
    seen_visits: set[tuple[Any, Any]] = set()
    sio = socketio.AsyncClient(reconnection=False)

    def recorder(name: str):
        async def on_event(data: dict[str, Any]) -> None:
            now_ms = time.time() * 1000
            at = data.get("at")
            if not isinstance(at, (int, float)):
                return
            key = name
            if name == "flow:execution":
                visit = (data.get("callSid"), data.get("seq"))
                if visit in seen_visits:  # a visit re-sent to close it
                    return
                seen_visits.add(visit)
                # Visits of the first turn are written at once; later ones ride in batches
                # or with the final record, so their age includes the turns in between.
                if data.get("written") != "first_turn":
                    key = "flow:execution (batched)"
            latencies[key].append(now_ms - at)
            sent = data.get("sent")
            if isinstance(sent, (int, float)):
                latencies["(publish → client)"].append(now_ms - sent)

        return on_event

    for name in ("call:started", "call:completed", "flow:execution"):
        sio.on(name, recorder(name))
    await sio.connect(api, auth={"token": access_token}, transports=["websocket"],
                      wait_timeout=10)
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        if flow_id is None:
            flows = (await http.get("/api/flows", headers={
                "Authorization": f"Bearer {access_token}"})).json()["items"]
            flow_id = next((f["id"] for f in flows if f.get("isDefault")), flows[0]["id"])
    joined = await sio.call("join:room", f"flow:{flow_id}", timeout=10)
    if not joined.get("ok"):
        raise RuntimeError(f"could not join flow:{flow_id}: {joined}")

    gate = asyncio.Semaphore(concurrency)
    outcomes: dict[str, int] = defaultdict(int)

    async def one(i: int) -> None:
        async with gate:
            result = await SimulatedCall(api, webhook_token, digits=list(digits),
                                         caller=f"+9198765{i:05d}").run()
            outcomes[result.outcome.value] += 1

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    # call:completed follows the final record, a little after the last webhook.
    for _ in range(600):  # at most 60 s
        if len(latencies["call:completed"]) >= outcomes.get("completed", 0):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(settle_s)
    await sio.disconnect()
    direct = [v for k, vs in latencies.items() if not k.startswith(("flow:execution (", "("))
              for v in vs]
    return {
        "calls": calls,
        "concurrency": concurrency,
        "outcomes": dict(outcomes),
        "wall_s": round(time.perf_counter() - began, 1),
        "overall": summary(direct),
        "by_event": {k: summary(v) for k, v in sorted(latencies.items())},
    }


async def _login(api: str, username: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        r = await http.post("/api/auth/login", json={"username": username, "password": password})
        r.raise_for_status()
        return str(r.json()["accessToken"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    port = os.environ.get("IVR_API_PORT", "8000")
    parser.add_argument("--api", default=f"http://127.0.0.1:{port}")
    parser.add_argument("--token", default=os.environ.get("IVR_WEBHOOK_TOKEN", ""),
                        help="the webhook token in the Exotel path")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default=os.environ.get("IVR_ADMIN_PASSWORD", "admin123"))
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--digits", default="", help="keys pressed, comma-separated (default "
                        "none: the menu times out and the call says goodbye)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.token:
        from core.config import get_settings

        args.token = get_settings().webhook_token.get_secret_value()

    async def go() -> dict[str, Any]:
        access = await _login(args.api, args.username, args.password)
        return await run_bench(args.api, args.token, access, calls=args.calls,
                               concurrency=args.concurrency,
                               digits=tuple(d for d in args.digits.split(",") if d))

    report = asyncio.run(go())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['calls']} calls, concurrency {report['concurrency']}, "
              f"{report['wall_s']} s, outcomes {report['outcomes']}")
        for name, s in report["by_event"].items():
            print(f"  {name:28s} n={s['n']:4d}  p50 {s['p50_ms']:7.1f} ms  "
                  f"p95 {s['p95_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms")
        o = report["overall"]
        print(f"  {'overall (event path)':28s} n={o['n']:4d}  p50 {o['p50_ms']:7.1f} ms  "
              f"p95 {o['p95_ms']:7.1f} ms  (target p95 < 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
