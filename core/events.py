"""Live events on Redis pub/sub: what the worker (or any process) publishes for the API's
Socket.IO bridge to deliver, whichever API replica a client is connected to.

Channels:
  ivr:events     envelopes `{"event", "room", "data"}` published here (call:started,
                 call:completed, flow:execution); the bridge emits `data` as `event` to `room`
  agent:status   raw agent changes published by the routing Lua scripts (core.routing.scripts)
  queue:update   raw queue changes published by the routing Lua scripts

Events are best effort and at most once per publish: a Redis outage never fails the write
that triggered an event (the database stays the record; the dashboard refreshes every 5 s).
`call:started` and `call:completed` are published through a SET NX guard, so a retried
activity never announces the same call twice.

Every envelope carries `at` (ms since the epoch: when the workflow step happened) and `sent`
(when it was published) so a client can measure delivery latency and split it into the
write path and the Redis → Socket.IO path (bench/event_latency.py does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog

from core.phone import mask

log = structlog.stdlib.get_logger(__name__)

EVENTS_CHANNEL = "ivr:events"
AGENT_STATUS_CHANNEL = "agent:status"
QUEUE_UPDATE_CHANNEL = "queue:update"
CHANNELS = (EVENTS_CHANNEL, AGENT_STATUS_CHANNEL, QUEUE_UPDATE_CHANNEL)

# Rooms the bridge emits to. Everyone authenticated is in FLOOR (queues, agents); users who may
# see analytics are also in ANALYTICS (calls, dashboard); FLOW_ROOM needs an explicit join.
FLOOR_ROOM = "floor"
ANALYTICS_ROOM = "analytics"


def flow_room(flow_id: int) -> str:
    return f"flow:{flow_id}"


# Publish once per key: SET NX with a TTL, then PUBLISH (one round trip, atomic).
_PUBLISH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  return redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return -1
"""
_ONCE_TTL_MS = 6 * 3600 * 1000


def epoch_ms(at: datetime | None = None) -> int:
    return int((at.timestamp() if at is not None else time.time()) * 1000)


def envelope(event: str, room: str, data: dict[str, Any], at: datetime | None = None) -> str:
    return json.dumps(
        {"event": event, "room": room, "data": data, "at": epoch_ms(at), "sent": epoch_ms()},
        separators=(",", ":"),
        default=str,
    )


def call_started(
    *, call_sid: str, flow_id: int | None, flow_name: str | None, caller: str | None
) -> dict[str, Any]:
    """`call:started` payload; the caller's number is always masked (events reach managers)."""
    return {"callSid": call_sid, "flowId": flow_id, "flowName": flow_name,
            "callerNumber": mask(caller)}


async def announce_call_started(
    publisher: EventPublisher, *, call_sid: str, flow_id: int | None, flow_name: str | None,
    caller: str | None, at: datetime,
) -> None:
    """`call:started`, once per call whoever announces it (the API that started it, or the
    workflow's first write if the API could not): one guard key for both."""
    await publisher.publish(
        "call:started",
        ANALYTICS_ROOM,
        call_started(call_sid=call_sid, flow_id=flow_id, flow_name=flow_name, caller=caller),
        at=at,
        once_key=f"started:{call_sid}",
    )


def call_completed(
    *, call_sid: str, flow_id: int | None, status: str, duration_s: float
) -> dict[str, Any]:
    return {"callSid": call_sid, "flowId": flow_id, "status": status,
            "duration": round(duration_s, 1)}


def flow_execution(
    *, execution_id: int, call_sid: str, node_id: str | None, node_name: str | None,
    node_type: str | None = None, seq: int | None = None, written: str | None = None,
) -> dict[str, Any]:
    """`flow:execution`; `seq` orders a call's visits (a visit re-sent to close it repeats its
    seq) and `written` says which write carried it: first_turn, batch or end."""
    return {"executionId": execution_id, "callSid": call_sid, "currentNodeId": node_id,
            "nodeName": node_name, "nodeType": node_type, "seq": seq, "written": written}


class EventPublisher:
    """Publishes envelopes on `ivr:events`; never raises (events are not the record)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._once = redis.register_script(_PUBLISH_ONCE)

    async def publish(
        self, event: str, room: str, data: dict[str, Any], *, at: datetime | None = None,
        once_key: str | None = None,
    ) -> bool:
        payload = envelope(event, room, data, at)
        try:
            if once_key is None:
                await self.redis.publish(EVENTS_CHANNEL, payload)
                return True
            sent = await self._once(
                keys=[f"ev:once:{once_key}"], args=[EVENTS_CHANNEL, payload, _ONCE_TTL_MS]
            )
            return int(sent) >= 0
        except Exception as exc:  # a Redis outage must not fail the DB write behind it
            log.warning("event_publish_failed", event_name=event, error=str(exc))
            return False

    async def publish_many(
        self, items: Iterable[tuple[str, str, dict[str, Any], datetime | None]]
    ) -> None:
        """Several envelopes in one pipeline round trip, in order."""
        batch = [envelope(event, room, data, at) for event, room, data, at in items]
        if not batch:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for payload in batch:
                    pipe.publish(EVENTS_CHANNEL, payload)
                await pipe.execute()
        except Exception as exc:
            log.warning("event_publish_failed", event_name="batch", error=str(exc))
