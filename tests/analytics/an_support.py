"""Helpers the analytics tests import (tests are not a package, so not from conftest)."""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import socketio
from temporalio.client import Client
from temporalio.worker import Worker

from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from activities.logic import LogicActivities
from activities.routing import RoutingActivities
from core.config import Env, Settings
from core.events import EventPublisher
from core.redis import make_redis
from workflows import WORKFLOWS, workflow_runner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import PASSWORDS, assert_error, login, serve

OPEN_CLOCK = "2026-01-05T11:00:00+05:30"


def make_worker(client: Client, task_queue: str, sessionmaker, redis_url: str) -> Worker:
    """The real workflows and activities, with the call activities publishing live events."""
    redis = make_redis(redis_url)
    logic_settings = Settings(env=Env.test).model_copy(
        update={"business_hours_clock": datetime.fromisoformat(OPEN_CLOCK)}
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            *CallActivities(sessionmaker, EventPublisher(redis)).all(),
            *CarrierActivities(Settings(env=Env.test), httpx.AsyncClient()).all(),
            *LogicActivities(logic_settings, sessionmaker, httpx.AsyncClient()).all(),
            *RoutingActivities(sessionmaker, redis).all(),
        ],
        workflow_runner=workflow_runner(),
    )


class Listener:
    """A Socket.IO client that records every event it receives, with the receive time."""

    EVENTS = ("dashboard:metrics", "call:started", "call:completed", "queue:update",
              "agent:status", "flow:execution", "room:error")

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.got: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.received_ms: dict[str, list[float]] = defaultdict(list)
        for name in self.EVENTS:
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str):
        async def record(data: Any) -> None:
            import time

            self.got[name].append(data)
            self.received_ms[name].append(time.time() * 1000)

        return record

    async def connect(self, url: str, token: str | None) -> None:
        await self.sio.connect(
            url, auth={"token": token} if token else None, transports=["websocket"],
            socketio_path="socket.io", wait_timeout=5,
        )

    async def join(self, room: str) -> dict[str, Any]:
        return await self.sio.call("join:room", room, timeout=5)

    async def close(self) -> None:
        await self.sio.disconnect()

    async def wait_for(self, name: str, predicate=lambda d: True, timeout_s: float = 20):
        for _ in range(int(timeout_s * 20)):
            for item in self.got.get(name, []):
                if predicate(item):
                    return item
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name} matching within {timeout_s}s; got {dict(self.got)}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


__all__ = ["PASSWORDS", "Listener", "assert_error", "bearer", "login", "make_worker", "serve"]
