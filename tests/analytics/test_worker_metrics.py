"""The worker-side Prometheus pieces: failed activity attempts are counted by the interceptor
and served over HTTP by serve_worker_metrics."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import httpx
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.worker import Worker

from core.metrics import ACTIVITY_FAILURES, ActivityFailureInterceptor, serve_worker_metrics


@activity.defn(name="analytics_test_flaky")
async def flaky() -> str:
    raise ValueError("boom")


@workflow.defn(name="AnalyticsFlakyWorkflow", sandboxed=False)
class FlakyWorkflow:
    @workflow.run
    async def run(self) -> str:
        try:
            return await workflow.execute_activity(
                "analytics_test_flaky", start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(maximum_attempts=2, initial_interval=timedelta(
                    milliseconds=10)),
            )
        except ActivityError:
            return "failed"


def _count() -> float:
    series = ACTIVITY_FAILURES.labels(activity="analytics_test_flaky", error="ValueError")
    return series._value.get()


async def test_failed_activity_attempts_are_counted_and_served(temporal_client) -> None:
    before = _count()
    queue = f"an-metrics-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[FlakyWorkflow],
                      activities=[flaky], interceptors=[ActivityFailureInterceptor()]):
        result = await temporal_client.execute_workflow(
            "AnalyticsFlakyWorkflow", id=f"an-flaky-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
    assert result == "failed"
    assert _count() - before == 2  # both attempts
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve_worker_metrics(port, addr="127.0.0.1")
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    line = next(ln for ln in body.splitlines()
                if ln.startswith("ivr_activity_failures_total{")
                and 'activity="analytics_test_flaky"' in ln)
    assert float(line.rsplit(" ", 1)[1]) == _count()

