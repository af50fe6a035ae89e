"""A worker killed (SIGKILL) while its dial is in flight: the callback is neither lost nor
dialled twice. Real `python worker.py` processes, the API, the fake Exotel holding its answer to
the create long enough for the kill to land after the call was placed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from api_helpers import login, serve
from cb_support import WEBHOOK_TOKEN, eventually, load
from fake_exotel import FakeExotel
from sqlalchemy import select

from api.main import create_app
from core.config import Settings
from core.db.models import Flow

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(scope="module")
async def api_url(cb_settings: Settings, seeded: None) -> AsyncIterator[str]:
    async with serve(create_app(cb_settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            for _ in range(200):
                health = (await probe.get("/health")).json()
                if health["components"]["temporal"]["status"] == "up":
                    break
                await asyncio.sleep(0.05)
        yield url


def _worker_env(settings: Settings, api_url: str, fake_url: str, fake: FakeExotel) -> dict:
    return {
        **os.environ,
        "IVR_ENV": "test",
        "IVR_LOG_JSON": "false",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "EXOTEL_SID": fake.sid,
        "EXOTEL_API_KEY": fake.api_key,
        "EXOTEL_API_TOKEN": fake.api_token,
        "EXOTEL_API_BASE": fake_url,
        "EXOTEL_CALLER_ID": settings.exotel_caller_id,
        "EXOTEL_APP_ID": settings.exotel_app_id,
        "IVR_PUBLIC_URL": api_url,
        "IVR_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "CALLBACK_RING_TIMEOUT_S": "5",
        "CALLBACK_TIME_LIMIT_S": "60",
        "CALLBACK_STATUS_GRACE_S": "2",
    }


def _spawn(env: dict, log: Path) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT, stdout=out,
        stderr=subprocess.STDOUT,
    )


async def test_worker_killed_mid_dial_neither_loses_nor_repeats_the_dial(
    api_url, cb_settings, fake_exotel, sessionmaker, tmp_path
):
    fake, fake_url = fake_exotel
    fake.connect_delay_s = 4.0  # the call exists; the answer is still on its way
    fake.call_duration_s = 0.5
    env = _worker_env(cb_settings, api_url, fake_url, fake)
    log = tmp_path / "workers.log"
    first = _spawn(env, log)
    second: subprocess.Popen | None = None
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=20) as http:
            headers = (await login(http, "manager", "manager123")).headers
            async with sessionmaker() as session:
                flow_id = await session.scalar(
                    select(Flow.id).where(Flow.live_version.is_not(None)).limit(1)
                )
            created = await http.post("/api/callbacks", headers=headers, json={
                "phoneNumber": "+919812399999", "asap": True, "flowId": flow_id})
            assert created.status_code == 201, created.text
            callback_id = created.json()["id"]
        prefix = f"cb:{callback_id}:"
        await eventually(lambda: fake.placed_for(prefix), timeout_s=60)
        first.send_signal(signal.SIGKILL)  # mid-dial: Exotel placed it, nobody heard back
        first.wait(timeout=10)
        fake.connect_delay_s = 0.0
        second = _spawn(env, log)

        async def finished():
            row = await load(sessionmaker, callback_id)
            return row if row.status in ("completed", "failed", "exhausted") else None

        row = await eventually(finished, timeout_s=120)
        assert row.status == "completed", (row.status, row.last_error, log.read_text()[-3000:])
        assert len(fake.placed_for(prefix)) == 1  # one dial, never two
        [attempt] = row.attempts
        [call] = [c for c in fake.calls.values() if c.form.get("CustomField") == f"{prefix}1"]
        assert attempt["callSid"] == call.sid and attempt["status"] == "answered"
        # The second worker's retry of the dial looked for the call instead of placing another.
        assert "callback_dial_found_earlier_call" in log.read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
