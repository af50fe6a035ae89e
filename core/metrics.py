"""Prometheus metrics shared by every part of the API process, in one registry.

Add a metric here (or register a collector on `REGISTRY`) and `/metrics` exposes it. Label
values must be bounded: route templates, never raw paths or ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

REGISTRY = CollectorRegistry(auto_describe=True)
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

HTTP_REQUESTS = Counter(
    "ivr_http_requests",
    "HTTP requests handled by the API, by route template and status.",
    ("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "ivr_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and status.",
    ("method", "route", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
LOGIN_ATTEMPTS = Counter(
    "ivr_login_attempts",
    "Login attempts by outcome (success, failure, throttled).",
    ("outcome",),
    registry=REGISTRY,
)
FALLBACK_REPLIES = Counter(
    "ivr_webhook_fallback_replies",
    "Holding replies given because the call workflow missed the webhook budget.",
    registry=REGISTRY,
)
API_WALKED_TURNS = Counter(
    "ivr_api_walked_turns",
    "Carrier turns the API walked itself (api/opening.py): `first` started the workflow from "
    "the walk, `later` went to it by the `walked` signal; other turns were workflow updates.",
    ["turn"],
    registry=REGISTRY,
)

# --- contact-centre metrics (issue 7) ------------------------------------------------------
# Calls are counted by the API's event bridge as call:started / call:completed arrive over
# Redis. Every API replica receives every event, so each replica's counter is the whole
# system's count: aggregate replicas with max(), not sum() (docs/grafana-dashboard.json does).
CALLS_STARTED = Counter(
    "ivr_calls_started",
    "Calls started, by flow id (from the live event stream; every replica counts all).",
    ("flow",),
    registry=REGISTRY,
)
CALLS_COMPLETED = Counter(
    "ivr_calls_completed",
    "Calls ended, by flow id and final status (completed, abandoned, failed).",
    ("flow", "status"),
    registry=REGISTRY,
)
QUEUE_SIZE = Gauge(
    "ivr_queue_size",
    "Callers waiting in each queue now (refreshed from Redis every 5 s).",
    ("queue",),
    registry=REGISTRY,
)
QUEUE_LONGEST_WAIT = Gauge(
    "ivr_queue_longest_wait_seconds",
    "The longest current wait in each queue (refreshed from Redis every 5 s).",
    ("queue",),
    registry=REGISTRY,
)
AGENTS_BY_STATUS = Gauge(
    "ivr_agents",
    "Agents by live routing status (refreshed from Redis every 5 s).",
    ("status",),
    registry=REGISTRY,
)
EVENTS_DELIVERED = Counter(
    "ivr_live_events",
    "Socket.IO events emitted by this API process, by event name.",
    ("event",),
    registry=REGISTRY,
)
# Worker side: counted in the worker process by core.metrics.ActivityFailureInterceptor and
# exposed by the worker's own /metrics (serve_worker_metrics); see docs/metrics.md.
ACTIVITY_FAILURES = Counter(
    "ivr_activity_failures",
    "Activity attempts that raised, by activity name and error type (worker process).",
    ("activity", "error"),
    registry=REGISTRY,
)

# Carrier endpoints: the turn latency the carrier sees, relabelled from the HTTP histogram.
# Exotel's applets live under /api/exotel/{token}/, the XML dialects (Twilio-style, ExoML)
# under /api/ivr/.
_WEBHOOK_ROUTE = re.compile(r"^/api/(?P<carrier>exotel|ivr)/(?:\{token\}/)?(?P<ep>.+)$")


class WebhookTurnCollector(Collector):
    """`ivr_webhook_turn_seconds{carrier,endpoint}`: the carrier routes' share of
    `ivr_http_request_duration_seconds`, so the middleware's one measurement serves both."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        out = HistogramMetricFamily(
            "ivr_webhook_turn_seconds",
            "Time to answer a carrier webhook (one caller turn), by carrier and endpoint.",
            labels=("carrier", "endpoint"),
        )
        series: dict[tuple[str, str], dict[str, Any]] = {}
        for metric in HTTP_REQUEST_DURATION.collect():
            for sample in metric.samples:
                match = _WEBHOOK_ROUTE.match(sample.labels.get("route", ""))
                if match is None:
                    continue
                carrier = "xml" if match.group("carrier") == "ivr" else match.group("carrier")
                key = (carrier, match.group("ep"))
                entry = series.setdefault(key, {"buckets": {}, "sum": 0.0})
                if sample.name.endswith("_bucket"):
                    le = sample.labels["le"]
                    entry["buckets"][le] = entry["buckets"].get(le, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    entry["sum"] += sample.value
        for (carrier, endpoint), entry in sorted(series.items()):
            ordered = sorted(entry["buckets"].items(), key=lambda kv: float(kv[0]))
            out.add_metric([carrier, endpoint], ordered, entry["sum"])
        yield out


REGISTRY.register(WebhookTurnCollector())


class ActivityFailureInterceptor(Interceptor):
    """Worker interceptor counting failed activity attempts in ACTIVITY_FAILURES."""

    def intercept_activity(
        self, next: ActivityInboundInterceptor
    ) -> ActivityInboundInterceptor:
        return _CountingActivityInbound(next)


class _CountingActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            name = getattr(input.fn, "__temporal_activity_definition", None)
            ACTIVITY_FAILURES.labels(
                activity=getattr(name, "name", None) or getattr(input.fn, "__name__", "?"),
                error=type(exc).__name__,
            ).inc()
            raise


def serve_worker_metrics(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104
    """Expose REGISTRY over HTTP from a worker process (the API serves it at /metrics)."""
    start_http_server(port, addr=addr, registry=REGISTRY)
