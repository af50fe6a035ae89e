"""Helpers the end-to-end tests import (tests are not a package, so not from conftest)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from activities.logic import LogicActivities
from activities.routing import RoutingActivities
from core.config import Env, Settings
from core.redis import make_redis
from workflows import WORKFLOWS, workflow_runner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import serve

# The seeded flow checks "Support hours" (Mon-Sat 09:00-18:00 IST): its calls see this
# instant, a Monday morning, so the menu is open whenever the suite runs.
OPEN_CLOCK = "2026-01-05T11:00:00+05:30"


def make_worker(
    client: Client,
    task_queue: str,
    sessionmaker,
    *,
    clock: str | None = OPEN_CLOCK,
    redis_url: str | None = None,
    logic_settings: Settings | None = None,
) -> Worker:
    """An in-process worker with the real workflows and activities on `task_queue` (the
    queue and transfer nodes' routing activities too when given a Redis URL)."""
    redis = make_redis(redis_url) if redis_url else None
    routing = RoutingActivities(sessionmaker, redis).all() if redis is not None else []
    # The logic nodes' activities: `logic_settings` with the business-hours `clock`.
    logic_settings = (logic_settings or Settings(env=Env.test)).model_copy(
        update={"business_hours_clock": datetime.fromisoformat(clock) if clock else None}
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            *CallActivities(sessionmaker).all(),
            # No Exotel credentials here: silent calls end without a carrier check.
            *CarrierActivities(Settings(env=Env.test), httpx.AsyncClient(), redis).all(),
            *LogicActivities(logic_settings, sessionmaker, httpx.AsyncClient(), redis).all(),
            *routing,
        ],
        workflow_runner=workflow_runner(),
    )


async def publish_on_number(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict, number: str
) -> int:
    """Create a flow through the REST API, give it `number` and publish it; its id."""
    created = await http.post("/api/flows", json=body, headers=headers)
    assert created.status_code == 201, created.text
    flow_id = created.json()["id"]
    numbers = await http.put(f"/api/flows/{flow_id}/numbers", json={"numbers": [number]},
                             headers=headers)
    assert numbers.status_code == 200, numbers.text
    published = await http.post(f"/api/flows/{flow_id}/publish", headers=headers)
    assert published.status_code == 201, published.text
    return int(flow_id)


__all__ = ["OPEN_CLOCK", "make_worker", "publish_on_number", "serve"]
