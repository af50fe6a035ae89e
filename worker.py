"""Temporal worker: every workflow in `workflows.WORKFLOWS`, every activity that
`activities.build_activities` provides, on `settings.temporal_task_queue`.

Run it as `python worker.py` (what `ivr dev` does) or through `main()`. SIGINT/SIGTERM stop
polling, give running activities `GRACEFUL_SHUTDOWN` to finish, then exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from typing import Any

import structlog
from temporalio.worker import Worker

from activities import build_activities
from activities.callback_queue import run_callback_dispatcher
from core.config import Settings
from core.logging import configure_logging
from core.metrics import ActivityFailureInterceptor, serve_worker_metrics
from core.runtime import freeze_startup_heap
from core.temporal import connect, temporal_target
from workflows import WORKFLOWS, workflow_runner

GRACEFUL_SHUTDOWN = timedelta(seconds=10)

log = structlog.get_logger("worker")


def _name(item: Any) -> str:
    return str(getattr(item, "__qualname__", None) or getattr(item, "__name__", repr(item)))


async def run(settings: Settings, stop: asyncio.Event) -> int:
    """Serve the registries until `stop` is set; the exit code for the process."""
    async with build_activities(settings) as activities:
        if not WORKFLOWS and not activities:
            log.warning(
                "worker_nothing_to_run",
                detail="workflows.WORKFLOWS and activities.build_activities are both empty",
            )
            return 0
        target = temporal_target(settings)
        try:
            client = await connect(settings)
        except RuntimeError as exc:  # the SDK's connection failures are RuntimeErrors
            log.error("worker_cannot_reach_temporal", temporal=target, error=str(exc))
            return 1
        worker = Worker(
            client,
            task_queue=settings.temporal_task_queue,
            workflows=list(WORKFLOWS),
            activities=list(activities),
            workflow_runner=workflow_runner(sandboxed=settings.workflow_sandbox),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            interceptors=[ActivityFailureInterceptor()],
        )
        if settings.worker_metrics_port:
            serve_worker_metrics(settings.worker_metrics_port)
        log.info(
            "worker_started",
            temporal=target,
            namespace=settings.temporal_namespace,
            task_queue=settings.temporal_task_queue,
            workflows=[_name(w) for w in WORKFLOWS],
            activities=[_name(a) for a in activities],
        )
        # `async with` cancels us and re-raises if the worker hits a fatal error.
        async with worker:
            # Queue callbacks whose agent the routing engine reserved go to their workflows.
            dispatcher = asyncio.create_task(
                run_callback_dispatcher(settings, client, stop), name="callback-dispatcher"
            )
            await stop.wait()
            log.info("worker_stopping", graceful_shutdown_s=GRACEFUL_SHUTDOWN.total_seconds())
            await dispatcher
    log.info("worker_stopped")
    return 0


async def _serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run(settings, stop)


def main() -> None:
    # The workflow sandbox re-imports the workflow modules for every call; without their
    # bytecode cache (PYTHONDONTWRITEBYTECODE is common in containers) every call start
    # compiles them from source again. Write it for this process whatever the environment.
    sys.dont_write_bytecode = False
    settings = Settings()
    configure_logging(settings)
    # Full collections walked the whole start-up heap every few seconds (core.runtime).
    freeze_startup_heap("workflows.call", "workflows.walker")
    sys.exit(asyncio.run(_serve(settings)))


if __name__ == "__main__":
    main()
