"""worker.py counts failed activity attempts and serves them when IVR_WORKER_METRICS_PORT is set."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_worker_serves_its_metrics(services, db_url, redis_url) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "IVR_ENV": "test",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "TEMPORAL_ADDRESS": services.temporal_address,
        "TEMPORAL_TASK_QUEUE": f"metrics-{port}",
        "IVR_WORKER_METRICS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "worker.py"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        body = ""
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(150):
                try:
                    body = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        assert "ivr_activity_failures" in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
