"""Helpers the dashboard tests import (tests are not a package, so not from conftest): a real
backend, the API under uvicorn and a call worker on an event loop of their own in a thread
(AppTest runs the dashboard synchronously in the test's thread, so an API on the test's own
loop could never answer it), and AppTest helpers."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from streamlit.testing.v1 import AppTest

from api.main import create_app
from cli.call import Outcome, SimulatedCall
from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.seed import run_seed
from core.temporal import connect, with_data_converter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
from e2e_support import OPEN_CLOCK, make_worker, serve  # noqa: E402

APP = str(HERE.parent.parent / "dashboard" / "app.py")
T = TypeVar("T")


@dataclass
class Backend:
    """The API and a worker on a private loop; `run` executes a coroutine there."""

    settings: Settings
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    url: str = ""
    calls: list[Any] = field(default_factory=list)
    _stack: AsyncExitStack | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="dashboard-backend")
        self._thread.start()
        self.run(self._start(), timeout=180)

    def stop(self) -> None:
        try:
            self.run(self._stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self._thread:
                self._thread.join(10)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        await run_seed(self.settings)
        stack = AsyncExitStack()
        self._stack = stack
        engine = make_engine(self.settings.database_url, pool_size=4)
        stack.push_async_callback(engine.dispose)
        sessionmaker = make_sessionmaker(engine)
        # The API walks first turns at the workers' business-hours clock.
        api_settings = self.settings.model_copy(
            update={"business_hours_clock": datetime.fromisoformat(OPEN_CLOCK)}
        )
        self.url = await stack.enter_async_context(serve(create_app(api_settings)))
        client = with_data_converter(await connect(self.settings))
        await stack.enter_async_context(
            make_worker(client, self.settings.temporal_task_queue, sessionmaker,
                        redis_url=self.settings.redis_url)
        )
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            for _ in range(300):  # the app connects to Temporal in the background
                health = (await http.get("/health")).json()
                if health["components"]["temporal"]["status"] == "up":
                    break
                await asyncio.sleep(0.05)

    async def _stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    # --- data ---------------------------------------------------------------------------

    async def admin(self, http: httpx.AsyncClient) -> dict[str, str]:
        r = await http.post("/api/auth/login", json={"username": "admin", "password": "admin123"})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['accessToken']}"}

    async def set_status(self, team: str, status: str) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            headers = await self.admin(http)
            agents = (await http.get("/api/agents", params={"team": team},
                                     headers=headers)).json()["items"]
            for a in agents:
                r = await http.put(f"/api/agents/{a['id']}/status",
                                   json={"status": status}, headers=headers)
                assert r.status_code == 200, r.text

    async def place_calls(self) -> None:
        """A billing call and a tech call answered by agents, a caller who never chooses, one
        who hangs up at the menu, and one who asks for an agent when none is free (voicemail)."""
        token = self.settings.webhook_token.get_secret_value()
        await self.set_status("billing", "available")
        await self.set_status("tech", "available")
        plans: list[dict[str, Any]] = [
            {"digits": ["1"], "caller": "+919812345001"},
            {"digits": ["2"], "caller": "+919812345002"},
            {"digits": [], "caller": "+919812345003"},
            {"digits": [], "caller": "+919812345004", "hangup_after": 1},
        ]
        for plan in plans:
            call = SimulatedCall(self.url, token, **plan)
            result = await call.run()
            assert result.outcome in (Outcome.completed, Outcome.hung_up), result.error
            self.calls.append(result)
        await self.set_status("billing", "offline")
        await self.set_status("tech", "offline")
        voicemail = SimulatedCall(self.url, token, digits=["9"], caller="+919812345005")
        result = await voicemail.run()
        assert result.outcome == Outcome.completed, result.error
        self.calls.append(result)
        # The silent caller's call ends when no webhook comes back in time; wait until every
        # call has its final record, so the figures the pages show no longer move.
        sids = {c.call_sid for c in self.calls}
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            headers = await self.admin(http)
            for _ in range(600):
                r = await http.get("/api/analytics/calls/history", headers=headers,
                                   params={"limit": 50})
                if r.status_code != 200:
                    return  # no analytics API: nothing to wait for
                ended = {i["callSid"] for i in r.json()["items"] if i["status"] != "in_progress"}
                if sids <= ended:
                    return
                await asyncio.sleep(0.2)
        raise AssertionError(f"calls not finalised within 120 s: {sids - ended}")

    async def hold_in_tech_queue(self) -> str:
        """A caller presses 2 with no tech agent signed in: they wait in the queue (live)."""
        token = self.settings.webhook_token.get_secret_value()
        sid = f"dash{uuid.uuid4().hex[:16]}"
        base = f"/api/exotel/{token}"
        params = {"CallSid": sid, "CallFrom": "09876500001", "CallTo": "01140000000",
                  "Direction": "incoming"}
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            first = await http.get(f"{base}/passthru", params=params)
            assert first.json() == {"select": "gather"}, first.text
            second = await http.get(f"{base}/passthru", params={**params, "digits": '"2"'})
            assert second.status_code == 200, second.text
        return sid

    async def hang_up(self, sid: str) -> None:
        token = self.settings.webhook_token.get_secret_value()
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            await http.get(f"/api/exotel/{token}/status",
                           params={"CallSid": sid, "Status": "completed"})

    async def api_get(self, path: str, **params: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            headers = await self.admin(http)
            return await http.get(path, params=params, headers=headers)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.run(self.api_get(path, **params))

    def has(self, path: str) -> bool:
        """Does the API publish this route (some pages wait for other issues' endpoints)?"""
        paths = self.run(self._openapi_paths())
        return path in paths

    async def _openapi_paths(self) -> set[str]:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            r = await http.get("/api/openapi.json")
            if r.status_code != 200:
                r = await http.get("/openapi.json")
            return set(r.json().get("paths", {}))


PASSWORDS = {"admin": "admin123", "manager": "manager123", "agent": "agent123"}


def signed_in(username: str = "admin", page: str | None = None) -> AppTest:
    """The dashboard, signed in through its own form, on `page` (a file under pages/)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(PASSWORDS.get(username, username))
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    if page is not None:
        at.switch_page(f"pages/{page}")
        at.run()
    return at


def texts(at: AppTest) -> str:
    """Every piece of text on the page, for 'is this shown' assertions."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title",
                 "subheader"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    return "\n".join(parts)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def plotly_specs(at: AppTest) -> list[dict[str, Any]]:
    import json

    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def no_tracebacks(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
