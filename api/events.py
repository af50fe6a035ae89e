"""Live events over Socket.IO at `/socket.io`, fed from Redis pub/sub.

Every API replica subscribes to the same channels (core.events.CHANNELS) and emits to the
clients connected to it, so a worker's event reaches every client whichever replica holds its
connection; no replica talks to another. A client must present an access token (the `auth`
payload `{"token": ...}`, a `token` query parameter or an `Authorization: Bearer` header);
the connection is refused without one and dropped when the token expires.

Rooms: everyone is in `floor` (queue:update, agent:status); users with `analytics:view` are
also in `analytics` (dashboard:metrics every 5 s, call:started, call:completed); `flow:{id}`
(flow:execution) is joined with `join:room` by users who may see flows, and left with
`leave:room`. Both answer an ack `{"ok": bool, ...}`; a refused join also emits `room:error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as aioredis
import socketio
import structlog
from fastapi import FastAPI
from sqlalchemy import select

from api.routes.agents import get_routing_store
from api.routes.analytics import dashboard, live_routing
from core import events
from core.analytics import BUSINESS_TZ
from core.db.models import Flow, Queue
from core.errors import AppError
from core.metrics import (
    AGENTS_BY_STATUS,
    CALLS_COMPLETED,
    CALLS_STARTED,
    EVENTS_DELIVERED,
    QUEUE_LONGEST_WAIT,
    QUEUE_SIZE,
)
from core.permissions import has_permission
from core.repositories import users as users_repo
from core.security import decode_access_token

log = structlog.stdlib.get_logger(__name__)

DASHBOARD_INTERVAL_S = 5.0
QUEUE_NAME_TTL_S = 30.0
_FLOW_ROOM = re.compile(r"^flow:([1-9][0-9]{0,9})$")
AGENT_STATUSES = ("offline", "available", "reserved", "on_call", "wrap_up", "break")


def _token(environ: dict[str, Any], auth: Any) -> str | None:
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return auth["token"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("token"):
        return query["token"][0]
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


class LiveEvents:
    """The Socket.IO server of one API process and its Redis bridge."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sio = socketio.AsyncServer(
            async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False
        )
        self.interval_s = DASHBOARD_INTERVAL_S
        self._tasks: list[asyncio.Task[None]] = []
        self._expiry: dict[str, float] = {}
        self._queue_names: dict[int, str] = {}
        self._queue_names_at = 0.0
        self._redis: aioredis.Redis | None = None
        self.subscribed = asyncio.Event()
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("join:room", self._join)
        self.sio.on("leave:room", self._leave)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.app.state.settings
        # A client of its own: pub/sub blocks on reads, which the app client's 5 s socket
        # timeout would break.
        self._redis = aioredis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=5,
            health_check_interval=30,
        )
        self._tasks = [
            asyncio.create_task(self._bridge(), name="events-bridge"),
            asyncio.create_task(self._ticker(), name="events-ticker"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._redis is not None:
            await self._redis.aclose()

    # --- connections -------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = _token(environ, auth)
        if not token:
            raise socketio.exceptions.ConnectionRefusedError(
                {"error": "unauthorized", "detail": "an access token is required"}
            )
        try:
            claims = decode_access_token(token, self.app.state.settings)
            async with self.app.state.sessionmaker() as session:
                user = await users_repo.get(session, claims.user_id)
        except AppError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                {"error": exc.code, "detail": exc.detail}
            ) from None
        if user is None or not user.is_active:
            raise socketio.exceptions.ConnectionRefusedError(
                {"error": "unauthorized", "detail": "user is disabled or no longer exists"}
            )
        await self.sio.save_session(sid, {"user_id": user.id, "role": user.role})
        self._expiry[sid] = claims.expires_at.timestamp()
        await self.sio.enter_room(sid, events.FLOOR_ROOM)
        if has_permission(user.role, "analytics:view"):
            await self.sio.enter_room(sid, events.ANALYTICS_ROOM)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self._expiry.pop(sid, None)

    async def _refuse(self, sid: str, room: Any, error: str, detail: str) -> dict[str, Any]:
        answer = {"ok": False, "room": room, "error": error, "detail": detail}
        await self.sio.emit("room:error", answer, to=sid)
        return answer

    async def _join(self, sid: str, room: Any = None) -> dict[str, Any]:
        match = _FLOW_ROOM.match(room) if isinstance(room, str) else None
        if match is None:
            return await self._refuse(sid, room, "invalid_room", "rooms are 'flow:{id}'")
        session = await self.sio.get_session(sid)
        role = session.get("role", "")
        if not (has_permission(role, "flows:view") and has_permission(role, "analytics:view")):
            return await self._refuse(sid, room, "forbidden", "your role may not watch flows")
        flow_id = int(match.group(1))
        async with self.app.state.sessionmaker() as db:
            exists = await db.scalar(
                select(Flow.id).where(Flow.id == flow_id, Flow.deleted_at.is_(None))
            )
        if exists is None:
            return await self._refuse(sid, room, "not_found", f"flow {flow_id} does not exist")
        await self.sio.enter_room(sid, room)
        return {"ok": True, "room": room}

    async def _leave(self, sid: str, room: Any = None) -> dict[str, Any]:
        if isinstance(room, str) and _FLOW_ROOM.match(room):
            await self.sio.leave_room(sid, room)
            return {"ok": True, "room": room}
        return {"ok": False, "room": room, "error": "invalid_room", "detail": "not a flow room"}

    # --- Redis → clients ---------------------------------------------------------------

    async def _bridge(self) -> None:
        delay = 0.2
        while True:
            assert self._redis is not None
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*events.CHANNELS)
                self.subscribed.set()
                delay = 0.2
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        await self._deliver(message["channel"], message["data"])
                    except Exception as exc:  # one bad message must not stop the bridge
                        log.warning("event_delivery_failed", channel=message.get("channel"),
                                    error=str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning("events_bridge_reconnecting", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _deliver(self, channel: str, raw: str) -> None:
        body = json.loads(raw)
        if channel == events.EVENTS_CHANNEL:
            name, room, data = body["event"], body["room"], dict(body["data"])
            data.setdefault("at", body.get("at"))
            data.setdefault("sent", body.get("sent"))
            if name == "call:started":
                CALLS_STARTED.labels(flow=str(data.get("flowId"))).inc()
            elif name == "call:completed":
                CALLS_COMPLETED.labels(
                    flow=str(data.get("flowId")), status=str(data.get("status"))
                ).inc()
            await self.sio.emit(name, data, room=room)
        elif channel == events.AGENT_STATUS_CHANNEL:
            name, data = "agent:status", await self._agent_payload(body)
            await self.sio.emit(name, data, room=events.FLOOR_ROOM)
        elif channel == events.QUEUE_UPDATE_CHANNEL:
            name, data = "queue:update", await self._queue_payload(body)
            await self.sio.emit(name, data, room=events.FLOOR_ROOM)
        else:
            return
        EVENTS_DELIVERED.labels(event=name).inc()

    async def _agent_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        agent_id = int(body["agentId"])
        assert self._redis is not None
        name, active = await self._redis.hmget(f"agent:{agent_id}", "name", "active")
        return {
            "agentId": agent_id,
            "agentName": name,
            "status": body.get("status"),
            "currentCalls": int(active or 0),
            "previous": body.get("previous"),
            "at": body.get("at"),
        }

    async def _queue_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        queue_id = int(body["queueId"])
        assert self._redis is not None
        head = await self._redis.zrange(f"queue:{queue_id}:arr", 0, 0, withscores=True)
        now_ms = time.time() * 1000
        longest = round(max(0.0, now_ms - float(head[0][1])) / 1000, 1) if head else 0.0
        return {
            "queueId": queue_id,
            "queueName": await self._queue_name(queue_id),
            "currentSize": int(body.get("size") or 0),
            "longestWaitTime": longest,
            "event": body.get("event"),
            "at": body.get("at"),
        }

    async def _queue_name(self, queue_id: int) -> str | None:
        stale = time.monotonic() - self._queue_names_at > QUEUE_NAME_TTL_S
        if stale or queue_id not in self._queue_names:
            async with self.app.state.sessionmaker() as session:
                rows = await session.execute(select(Queue.id, Queue.name))
                self._queue_names = {int(i): n for i, n in rows}
            self._queue_names_at = time.monotonic()
        return self._queue_names.get(queue_id)

    # --- every few seconds -------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dashboard_tick_failed", error=str(exc))
            await asyncio.sleep(self.interval_s)

    async def _tick(self) -> None:
        now = time.time()
        for sid, exp in list(self._expiry.items()):
            if exp <= now:
                self._expiry.pop(sid, None)
                await self.sio.disconnect(sid)
        store = get_routing_store(types.SimpleNamespace(app=self.app))  # type: ignore[arg-type]
        # Never rebuild from here: a background read must not change routing's state.
        live = await live_routing(store, int(now * 1000), rebuild=False)
        self._gauges(live)
        listeners = list(self.sio.manager.get_participants("/", events.ANALYTICS_ROOM))
        if not listeners:
            return
        async with self.app.state.sessionmaker() as session:
            snapshot = await dashboard(session, store, BUSINESS_TZ, rebuild=False)
        await self.sio.emit(
            "dashboard:metrics", snapshot.model_dump(by_alias=True, mode="json"),
            room=events.ANALYTICS_ROOM,
        )
        EVENTS_DELIVERED.labels(event="dashboard:metrics").inc()

    def _gauges(self, live: dict[str, Any]) -> None:
        counts = dict.fromkeys(AGENT_STATUSES, 0)
        for snap in live["agents"]:
            counts[snap.status] = counts.get(snap.status, 0) + 1
        for status, n in counts.items():
            AGENTS_BY_STATUS.labels(status=status).set(n)
        for queue_id, (size, wait) in live["queues"].items():
            QUEUE_SIZE.labels(queue=str(queue_id)).set(size)
            QUEUE_LONGEST_WAIT.labels(queue=str(queue_id)).set(wait)


def install(app: FastAPI) -> LiveEvents:
    """Mount Socket.IO at /socket.io and run its Redis bridge for the app's lifetime."""
    live = LiveEvents(app)
    app.state.live_events = live
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(inner: FastAPI) -> AsyncIterator[Any]:
        async with original(inner) as state:
            await live.start()
            try:
                yield state
            finally:
                await live.stop()

    app.router.lifespan_context = lifespan
    app.mount("/socket.io", socketio.ASGIApp(live.sio, socketio_path="socket.io"))
    return live
