"""Prometheus metrics shared by every part of the API process, in one registry.

Add a metric here (or register a collector on `REGISTRY`) and `/metrics` exposes it. Label
values must be bounded: route templates, never raw paths or ids.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
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
