"""`ivr loadtest-queue`: more callers than agents through a real queue, over the Exotel webhooks.

Set-up through the REST API (admin): a queue, N agents with a skill of their own and a short
wrap-up, all signed in, and a flow `welcome → queue → transfer → hangup` published on its own
called number. Then C callers ring in (spread over `--arrival-s`), each walking Exotel's
universal app as the carrier would: Passthru, the applet its `select` names, Passthru again.

- Holding: the hold segment's greeting ends with a silence (or music) URL; the caller waits out
  its length (times `--time-scale`) and comes back: that Passthru is a *hold poll*.
- Agents: an agent "answers" the Programmable Connect after a handle time drawn from an
  exponential distribution with mean `--handle-s` (times `--time-scale`), then the caller's
  Passthru reports `DialCallStatus=completed` with the talk time; the agent wraps up and is
  free again. That is how the loop of agents serving the queue is simulated.
- Patience: each caller hangs up (simply stops coming back, as with Exotel) after an
  exponential patience with mean `--patience-s` if no agent reached them: abandoned.

Reported: wait until an agent was dialled (average, p95), service level (answered within the
queue's `--service-level-s` / offered), abandoned calls, hold polls answered per second and
their latency (p50/p95/p99). Percentiles are nearest-rank.
Times in the report are simulated seconds (real seconds / time scale), except latencies.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

# A module, not names: `cli.loadtest` imports cli.main, which imports this module, so when
# cli.loadtest is imported first its names do not exist yet while this line runs.
from cli import loadtest as _loadtest
from cli.main import app

SILENCE = re.compile(r"/silence/(\d+)\.wav$")
DEFAULT_CALLED = "+911140001234"


# The queue node's default hold segment (s, simulated): a caller is back this often.
HOLD_SEGMENT_S = 15


@dataclass
class QueueRun:
    waits_s: list[float] = field(default_factory=list)  # answered callers: entry -> dial
    answered_in_sl: int = 0
    abandoned: int = 0
    ended_unserved: dict[str, int] = field(default_factory=dict)  # hung up on by the flow
    errors: dict[str, int] = field(default_factory=dict)
    poll_ms: list[float] = field(default_factory=list)
    poll_at: list[float] = field(default_factory=list)  # monotonic time of each hold poll
    other_ms: list[float] = field(default_factory=list)
    agents_dialled: dict[str, int] = field(default_factory=dict)
    overlaps: int = 0  # an agent's number dialled while its previous call was still on
    last_arrival: float = 0.0  # monotonic time the last caller's first turn was answered
    ended: float = 0.0  # monotonic time the run stopped

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass(frozen=True)
class Shape:
    callers: int
    agents: int
    handle_s: float
    patience_s: float
    arrival_s: float
    time_scale: float
    service_level_s: int
    seed: int
    max_real_s: float | None = None  # stop callers still holding after this many real seconds


class Setup:
    """The queue, agents and flow this run uses, created and removed through the REST API."""

    def __init__(self, client: Any, api: str, headers: dict[str, str], tag: str) -> None:
        self.client, self.api, self.headers, self.tag = client, api, headers, tag
        self.queue_id: int | None = None
        self.agent_ids: list[int] = []
        self.flow_id: int | None = None

    async def _req(self, method: str, path: str, **kw: Any) -> Any:
        response = await self.client.request(
            method, f"{self.api}{path}", headers=self.headers, **kw
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    async def create(self, shape: Shape, called: str) -> None:
        skill = f"lt{self.tag}"
        queue = await self._req(
            "POST",
            "/api/queues",
            json={
                "name": f"loadtest {self.tag}",
                "strategy": "longest_idle",
                "requiredSkills": {skill: 1},
                "maxSize": 10000,
                "maxWaitS": 14400,
                "announceIntervalS": 30,
                "serviceLevelS": shape.service_level_s,
                "callbackEnabled": False,
            },
        )
        self.queue_id = queue["id"]
        for i in range(shape.agents):
            agent = await self._req(
                "POST",
                "/api/agents",
                json={
                    "name": f"loadtest {self.tag} {i}",
                    "phoneNumber": f"+9197{i:02d}{int(self.tag, 16) % 10**6:06d}",
                    "skills": {skill: 3},
                    "team": f"lt{self.tag}",
                    "wrapUpS": 1,
                },
            )
            self.agent_ids.append(agent["id"])
            await self._req(
                "PUT", f"/api/agents/{agent['id']}/status", json={"status": "available"}
            )
        flow = await self._req(
            "POST",
            "/api/flows",
            json={
                "name": f"loadtest queue {self.tag}",
                "nodes": [
                    {"id": "welcome", "type": "welcome", "config": {"message": "Hello."}},
                    {"id": "queue", "type": "queue", "config": {"queueId": self.queue_id}},
                    {
                        "id": "agent",
                        "type": "transfer",
                        "config": {
                            "team": f"lt{self.tag}",
                            "routingStrategy": "longest_idle",
                            "maxAttempts": 1,
                            "ringTimeout": 10,
                        },
                    },
                    {"id": "bye", "type": "hangup", "config": {"message": "Goodbye."}},
                ],
                "connections": [
                    {"fromNode": "welcome", "toNode": "queue", "port": "next"},
                    {"fromNode": "queue", "toNode": "agent", "port": "next"},
                    {"fromNode": "queue", "toNode": "bye", "port": "timeout"},
                    {"fromNode": "agent", "toNode": "bye", "port": "completed"},
                    {"fromNode": "agent", "toNode": "bye", "port": "noAnswer"},
                ],
            },
        )
        self.flow_id = flow["id"]
        await self._req("POST", f"/api/flows/{self.flow_id}/publish", json={})
        await self._req("PUT", f"/api/flows/{self.flow_id}/numbers", json={"numbers": [called]})

    async def stats(self) -> Any:
        return await self._req(
            "GET", f"/api/queues/{self.queue_id}/stats", params={"sinceHours": 1}
        )

    async def remove(self) -> None:
        for agent_id in self.agent_ids:
            try:
                await self._req("PUT", f"/api/agents/{agent_id}/status", json={"status": "offline"})
                await self._req("DELETE", f"/api/agents/{agent_id}")
            except RuntimeError:
                pass
        for path in (f"/api/flows/{self.flow_id}", f"/api/queues/{self.queue_id}"):
            try:
                await self._req("DELETE", path)
            except RuntimeError:
                pass


async def caller(
    client: Any,
    base: str,
    shape: Shape,
    run: QueueRun,
    rng: random.Random,
    *,
    index: int,
    called: str,
    busy_until: dict[str, float],
) -> None:
    """One caller from the first Passthru to the hang-up (or until they lose patience)."""
    scale = shape.time_scale
    sid = f"ltq{uuid.uuid4().hex[:20]}"
    clock = [time.time()]
    patience = rng.expovariate(1 / shape.patience_s) if shape.patience_s > 0 else math.inf
    queued_at: float | None = None

    def params(**extra: str) -> dict[str, str]:
        clock[0] += 1
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock[0]))
        return {
            "CallSid": sid,
            "CallFrom": f"098{index % 10**8:08d}",
            "CallTo": called,
            "Direction": "incoming",
            "CurrentTime": stamp,
            **extra,
        }

    async def passthru(extra: dict[str, str], *, poll: bool) -> str:
        started = time.perf_counter()
        response = await client.get(f"{base}/passthru", params=params(**extra))
        elapsed = (time.perf_counter() - started) * 1000
        (run.poll_ms if poll else run.other_ms).append(elapsed)
        if poll:
            run.poll_at.append(time.monotonic())
        if response.status_code != 200:
            raise RuntimeError(f"http_{response.status_code}")
        return str(response.json()["select"])

    extra: dict[str, str] = {}
    poll = False
    answered = False
    last_heard = ""
    for turn in range(2000):
        select = await passthru(extra, poll=poll)
        if turn == 0:
            run.last_arrival = max(run.last_arrival, time.monotonic())
        extra, poll = {}, False
        if select == "hangup":
            if not answered:
                # The flow ended the call before an agent: say why (the last words heard).
                reason = last_heard[:60] or "no prompt"
                run.ended_unserved[reason] = run.ended_unserved.get(reason, 0) + 1
            return
        if select == "say":
            text = (await client.get(f"{base}/greeting", params={"CallSid": sid})).text
            lines = [line for line in text.splitlines() if line.strip()]
            spoken = [line for line in lines if not line.startswith(("http://", "https://"))]
            last_heard = spoken[-1] if spoken else last_heard
            hold = next((int(m.group(1)) for m in map(SILENCE.search, lines) if m), None)
            if hold is None and any("queue" in line for line in lines):
                hold = HOLD_SEGMENT_S
            if hold is not None:
                queued_at = queued_at or time.monotonic()
                if (time.monotonic() - queued_at) / scale >= patience:
                    run.abandoned += 1  # stops coming back, as an Exotel caller does
                    return
                await asyncio.sleep(hold * scale)
                poll = True
            else:
                await asyncio.sleep(0.05)
            continue
        if select == "gather":
            await client.get(f"{base}/gather", params={"CallSid": sid})
            extra = {"digits": '""'}
            continue
        if select == "connect":
            connect = (await client.get(f"{base}/connect", params={"CallSid": sid})).json()
            number = (connect.get("destination") or {}).get("numbers", [""])[0]
            now = time.monotonic()
            if busy_until.get(number, 0) > now:
                run.overlaps += 1
            wait_s = (now - (queued_at or now)) / scale
            run.waits_s.append(wait_s)
            run.answered_in_sl += wait_s <= shape.service_level_s
            run.agents_dialled[number] = run.agents_dialled.get(number, 0) + 1
            answered = True
            talk = rng.expovariate(1 / shape.handle_s)
            busy_until[number] = now + talk * scale
            await asyncio.sleep(talk * scale)
            busy_until[number] = 0
            extra = {
                "DialCallStatus": "completed",
                "DialCallDuration": str(round(talk)),
                "CallType": "completed",
            }
            continue
        if select == "record":
            extra = {"RecordingUrl": "https://recordings.example/lt.mp3"}
            continue
    run.error("too_many_turns")


def peak_rate(times: list[float], window_s: float) -> float | None:
    """The most events in any `window_s` window, per second."""
    if not times:
        return None
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return round(best / window_s, 1)


def steady_polls(run: QueueRun, shape: Shape) -> dict[str, Any]:
    """Hold polls sent after the last arrival plus one hold segment: count, rate, latency."""
    settled = run.last_arrival + HOLD_SEGMENT_S * shape.time_scale
    samples = [ms for ms, done in zip(run.poll_ms, run.poll_at, strict=True)
               if run.last_arrival and done - ms / 1000 >= settled]
    window = run.ended - settled

    def pct(p: float) -> float | None:
        value = _loadtest.percentile(samples, p)
        return None if value is None else round(value, 1)

    return {
        "polls": len(samples),
        "perS": round(len(samples) / window, 1) if samples and window > 0 else None,
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
    }


def summarize(run: QueueRun, shape: Shape, elapsed_s: float) -> dict[str, Any]:
    answered = len(run.waits_s)
    offered = answered + run.abandoned
    polls = len(run.poll_ms)

    def pct(samples: list[float], p: float) -> float | None:
        value = _loadtest.percentile(samples, p)
        return None if value is None else round(value, 1)

    return {
        "callers": shape.callers,
        "agents": shape.agents,
        "answered": answered,
        "abandoned": run.abandoned,
        "endedUnserved": run.ended_unserved,
        "errors": run.errors,
        "waitS": {
            "avg": round(sum(run.waits_s) / answered, 1) if answered else None,
            "p95": pct(run.waits_s, 95),
            "max": round(max(run.waits_s), 1) if run.waits_s else None,
        },
        "serviceLevel": round(run.answered_in_sl / offered, 3) if offered else None,
        "serviceLevelS": shape.service_level_s,
        "holdPolls": polls,
        "holdPollsPerS": round(polls / elapsed_s, 1) if elapsed_s else None,
        "holdPollsPerSPeak10s": peak_rate(run.poll_at, 10.0),
        "holdPollMs": {
            "p50": pct(run.poll_ms, 50),
            "p95": pct(run.poll_ms, 95),
            "p99": pct(run.poll_ms, 99),
        },
        # The polls sent once every caller had arrived and heard a first hold segment: the
        # holding line on its own, apart from the ramp where first turns (workflow starts)
        # compete with polls for the same CPU.
        "holdPollMsAfterArrivals": steady_polls(run, shape),
        "otherTurnMs": {"p50": pct(run.other_ms, 50), "p99": pct(run.other_ms, 99)},
        "agentOverlaps": run.overlaps,
        "elapsedS": round(elapsed_s, 1),
        "timeScale": shape.time_scale,
    }


async def run_queue_load(
    api: str, token: str, shape: Shape, *, username: str, password: str, called: str
) -> dict[str, Any]:
    # aiohttp, as `ivr loadtest` uses: the generator's own CPU (and event-loop lag, which
    # its latency figures include) is taken from the same two cores as the stack's.
    async with _loadtest.light_client(shape.callers + 10, 30.0) as client:
        login = await client.post(
            f"{api}/api/auth/login", json={"username": username, "password": password}
        )
        if login.status_code != 200:
            raise RuntimeError(f"login failed: {login.status_code} {login.text[:200]}")
        headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        setup = Setup(client, api, headers, uuid.uuid4().hex[:8])
        run = QueueRun()
        rng = random.Random(shape.seed)  # noqa: S311  (a simulation, not a secret)
        busy: dict[str, float] = {}
        try:
            await setup.create(shape, called)
            base = f"{api}/api/exotel/{token}"
            started = time.monotonic()

            async def one(i: int) -> None:
                await asyncio.sleep(rng.uniform(0, shape.arrival_s * shape.time_scale))
                try:
                    await caller(
                        client,
                        base,
                        shape,
                        run,
                        random.Random(shape.seed + i),  # noqa: S311
                        index=i,
                        called=called,
                        busy_until=busy,
                    )
                except Exception as exc:  # one caller's failure is a figure, not a crash
                    run.error(type(exc).__name__ if not str(exc).startswith("http_") else str(exc))

            tasks = [asyncio.create_task(one(i)) for i in range(shape.callers)]
            _, pending = await asyncio.wait(tasks, timeout=shape.max_real_s)
            run.ended = time.monotonic()
            for task in pending:  # still holding at the end of the run: they hang up
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            elapsed = time.monotonic() - started
            report = summarize(run, shape, elapsed)
            report["stillHoldingAtEnd"] = len(pending)
            report["queueStats"] = await setup.stats()
        finally:
            await setup.remove()
    report["machine"] = _loadtest.machine_info()
    return report


@app.command("loadtest-queue")
def loadtest_queue(
    callers: Annotated[int, typer.Option(min=1, max=5000, help="Callers ringing in.")] = 40,
    agents: Annotated[int, typer.Option(min=1, max=200, help="Simulated agents.")] = 4,
    handle_s: Annotated[float, typer.Option(min=1, help="Mean handle (talk) time, s.")] = 60,
    patience_s: Annotated[
        float, typer.Option(min=0, help="Mean caller patience, s (0: never hang up).")
    ] = 300,
    arrival_s: Annotated[float, typer.Option(min=0, help="Spread of arrivals, s.")] = 60,
    time_scale: Annotated[
        float, typer.Option(min=0.01, max=1, help="Real seconds per simulated second.")
    ] = 1.0,
    service_level_s: Annotated[int, typer.Option(min=1, help="Service-level target, s.")] = 20,
    api: Annotated[str, typer.Option(help="API base URL (loopback only).")] = (
        "http://127.0.0.1:8000"
    ),
    token: Annotated[str | None, typer.Option(help="Webhook token.")] = None,
    username: Annotated[str, typer.Option(help="Admin user for the set-up.")] = "admin",
    password: Annotated[str | None, typer.Option(help="Its password ($IVR_ADMIN_PASSWORD).")] = (
        None
    ),
    called: Annotated[str, typer.Option(help="The number the test flow answers.")] = (
        DEFAULT_CALLED
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    max_real_s: Annotated[
        float | None, typer.Option(min=1, help="Stop after this many real seconds.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Queue load: more callers than agents; wait, service level, abandons and hold polls."""
    from core.config import get_settings

    settings = get_settings()
    api = _loadtest.require_loopback_url(api)
    token = token or settings.webhook_token.get_secret_value()
    password = password or settings.admin_password.get_secret_value()
    shape = Shape(
        callers=callers,
        agents=agents,
        handle_s=handle_s,
        patience_s=patience_s,
        arrival_s=arrival_s,
        time_scale=time_scale,
        service_level_s=service_level_s,
        seed=seed,
        max_real_s=max_real_s,
    )
    report = asyncio.run(
        run_queue_load(api, token, shape, username=username, password=password, called=called)
    )
    if json_out:
        typer.echo(json.dumps(report))
        return
    for key, value in report.items():
        if key != "machine":
            typer.echo(f"{key}: {value}")
