"""Liveness of the API's dependencies, and Prometheus metrics. Both public, by design: load
balancers and scrapers do not log in, and neither answer reveals more than up/down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from core.metrics import REGISTRY
from core.schemas import ComponentHealth, HealthOut

router = APIRouter(tags=["health"])
log = structlog.stdlib.get_logger(__name__)

CHECK_TIMEOUT_S = 1.0


class ComponentDown(Exception):
    """A check's own verdict; its message is safe to show."""


async def _probe(name: str, check: Callable[[], Awaitable[Any]]) -> ComponentHealth:
    begin = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await check()
    except TimeoutError:
        detail = f"no answer within {CHECK_TIMEOUT_S:g} s"
    except ComponentDown as exc:
        detail = str(exc)
    except Exception as exc:
        # The public answer names the failure's kind only; the log has the full message.
        log.warning("health_check_failed", component=name, error=str(exc))
        detail = type(exc).__name__
    else:
        return ComponentHealth(
            status="up", latency_ms=round((time.perf_counter() - begin) * 1000, 2)
        )
    return ComponentHealth(status="down", detail=detail)


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def read_health(request: Request) -> JSONResponse:
    """Each dependency's state: 200 when all are up, 503 when any is down."""
    state = request.app.state

    async def database() -> None:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await state.redis.ping()

    async def temporal() -> None:
        client = getattr(state, "temporal", None)
        if client is None:
            raise ComponentDown("not connected yet")
        if not await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S)):
            raise ComponentDown("not serving")

    names = ("db", "redis", "temporal")
    results = await asyncio.gather(
        _probe("db", database), _probe("redis", redis), _probe("temporal", temporal)
    )
    components = dict(zip(names, results, strict=True))
    healthy = all(c.status == "up" for c in components.values())
    body = HealthOut(status="ok" if healthy else "degraded", components=components)
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True, exclude_none=True),
        status_code=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/metrics", include_in_schema=False)
async def read_metrics() -> Response:
    """Prometheus exposition of core.metrics.REGISTRY."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
