"""`ivr loadtest-queue` against a real API and worker: more callers than agents, time-scaled."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.worker import Worker

from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from activities.routing import RoutingActivities
from api.main import create_app
from cli.loadtest_queue import Shape, run_queue_load
from core.config import Env, Settings
from core.db.session import make_engine, make_sessionmaker
from core.redis import make_redis
from core.seed import seed_users
from core.temporal import with_data_converter
from workflows import WORKFLOWS, workflow_runner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import serve


@pytest_asyncio.fixture(scope="module")
async def stack(settings: Settings, cheap_hashing: None, temporal_client):
    settings = settings.model_copy(
        update={
            "temporal_task_queue": f"ltq-{uuid.uuid4().hex[:8]}",
            "call_grace_s": 3.0,
        }
    )
    engine = make_engine(settings.database_url, pool_size=4)
    sm = make_sessionmaker(engine)
    async with sm() as session:
        await seed_users(session, settings)
        await session.commit()
    redis = make_redis(settings.redis_url)
    worker = Worker(
        with_data_converter(temporal_client),
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        activities=[
            *CallActivities(sm).all(),
            *CarrierActivities(Settings(env=Env.test), httpx.AsyncClient(), redis).all(),
            *RoutingActivities(sm, redis).all(),
        ],
    )
    async with worker, serve(create_app(settings)) as url:
        async with httpx.AsyncClient() as probe:
            for _ in range(200):
                health = (await probe.get(f"{url}/health")).json()
                if health["components"]["temporal"]["status"] == "up":
                    break
                import asyncio

                await asyncio.sleep(0.05)
        yield url, settings
    await redis.aclose()
    await engine.dispose()


async def test_queue_scenario_reports_waits_service_level_abandons_and_polls(stack):
    url, settings = stack
    shape = Shape(
        callers=10,
        agents=2,
        handle_s=40,
        patience_s=0,
        arrival_s=5,
        time_scale=0.02,
        service_level_s=20,
        seed=3,
    )
    report = await run_queue_load(
        url,
        settings.webhook_token.get_secret_value(),
        shape,
        username="admin",
        password="admin123",
        called="+911140009876",
    )
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}))
    assert report["errors"] == {}, report
    unserved = sum(report["endedUnserved"].values())
    assert report["answered"] + report["abandoned"] + unserved == 10, report
    assert report["abandoned"] == 0  # nobody loses patience here
    # Every caller reaches an agent on an idle box; a loaded one may time out activities.
    assert report["answered"] >= 5, report
    assert report["agentOverlaps"] == 0  # no agent dialled while still on a call
    assert report["holdPolls"] > 0 and report["holdPollMs"]["p99"] is not None
    assert report["waitS"]["avg"] is not None and report["serviceLevel"] is not None
    stats = report["queueStats"]
    assert stats["answered"] >= report["answered"] and stats["size"] == 0


@pytest.mark.skipif(not os.environ.get("IVR_LTQ_BENCH"), reason="benchmark: set IVR_LTQ_BENCH")
async def test_queue_benchmark(stack):
    """IVR_LTQ_BENCH="callers,agents,handle_s,patience_s,time_scale,arrival_s": figures."""
    url, settings = stack
    callers, agents, handle, patience, scale, arrival = os.environ["IVR_LTQ_BENCH"].split(",")
    shape = Shape(
        callers=int(callers),
        agents=int(agents),
        handle_s=float(handle),
        patience_s=float(patience),
        arrival_s=float(arrival),
        time_scale=float(scale),
        service_level_s=20,
        seed=7,
    )
    report = await run_queue_load(
        url,
        settings.webhook_token.get_secret_value(),
        shape,
        username="admin",
        password="admin123",
        called="+911140009877",
    )
    print("BENCH " + json.dumps(report))


def test_steady_polls_leave_out_the_arrival_ramp() -> None:
    """Polls answered before the last caller arrived and heard a first segment are the ramp;
    the steady figure counts only the ones after, over the time after."""
    from cli.loadtest_queue import QueueRun, steady_polls

    shape = Shape(callers=3, agents=1, handle_s=60, patience_s=0, arrival_s=0, time_scale=0.1,
                  service_level_s=20, seed=1)
    run = QueueRun(last_arrival=100.0, ended=111.5)
    # (latency ms, answered at): ramp polls before 101.5 s, steady ones after.
    for ms, done in [(900, 100.5), (800, 101.6), (40, 102.0), (60, 105.0), (20, 111.0)]:
        run.poll_ms.append(ms)
        run.poll_at.append(done)
    steady = steady_polls(run, shape)
    assert steady["polls"] == 3  # 101.6 - 0.8 s began at 100.8, before the segment ended
    assert steady["perS"] == 0.3 and steady["p99"] == 60 and steady["p50"] == 40
    assert steady_polls(QueueRun(), shape)["polls"] == 0
