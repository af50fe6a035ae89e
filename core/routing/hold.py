"""Answering a queued caller's hold poll from Redis, without the workflow.

Hold polls are most of a busy centre's webhooks (2,000 callers on 15 s segments are ~130 a
second); each workflow update costs a workflow task, so a poll with nothing new should be
answered by the API from Redis. This module is the routing half of that: the queue activities
write a per-call hold record (`hold:{sid}`) every time the workflow puts the caller on hold, and
`answer_hold_poll` decides in one Lua round trip whether a data-less return can be answered
here, and if so renders the next hold segment with the live position and wait estimate.

It forwards (returns None) whenever the workflow must act: the entry is no longer waiting (an
agent was assigned, the caller left), the max wait is reached, or an announcement with the
callback offer is due (that segment is a gather, whose answer the workflow must read). Every
poll it answers marks the entry `seen`, which is what the queue's silence check reads.

The gateway (api/call_gateway.py) calls `HoldPoller.answer` for a data-less return whose
pending reply is a hold and answers with the segment it returns; the workflow's silence timer
asks `hold_seen_ms` (activity `call_hold_seen`) before it decides a holding caller is gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from core.routing.announce import announcement
from core.routing.ewt import position_wait_s
from core.routing.store import RoutingStore
from core.telephony import Hold, Say

log = structlog.get_logger(__name__)

HOLD_TTL_S = 3600

_POLL = r"""
local h = redis.call('HMGET', KEYS[1], 'q', 'deadline', 'every', 'last', 'cb',
                     'seg', 'music', 'msg', 'pos', 'ewt', 'aht', 'staffed', 'free')
if not h[1] then return {0, 'no_hold'} end
local e = redis.call('HMGET', KEYS[2], 'q', 'status')
if e[1] ~= h[1] or e[2] ~= 'waiting' then return {0, e[2] or 'gone'} end
local now = tonumber(ARGV[1])
if now >= tonumber(h[2]) then return {0, 'deadline'} end
local due = now - tonumber(h[4] or 0) >= tonumber(h[3])
if due and h[5] == '1' then return {0, 'offer'} end
redis.call('HSET', KEYS[2], 'seen', now)
if due then redis.call('HSET', KEYS[1], 'last', now) end
local r = redis.call('ZRANK', 'queue:' .. h[1] .. ':wait', ARGV[2])
-- At most one dispatch per queue per interval, whoever polls: agents whose wrap-up ended
-- (a time, not an event) reach the waiting callers without any workflow being involved.
local dispatch = redis.call('SET', 'dispatch:' .. h[1], '1', 'NX', 'PX', ARGV[3]) and 1 or 0
return {1, r and (r + 1) or 0, due and 1 or 0, h[2], h[6] or '15', h[7] or '', h[8] or '',
        h[9] or '1', h[10] or '1', h[11] or '180', h[12] or '0', h[13] or '0', h[1], dispatch}
"""


@dataclass(frozen=True)
class HoldRecord:
    """How to render this call's hold segments (written by the queue activities)."""

    queue_id: int
    deadline_ms: int
    every_ms: int
    last_announce_ms: int
    segment_s: float = 15.0
    music_url: str | None = None
    hold_message: str | None = None
    announce_position: bool = True
    announce_wait: bool = True
    offer_callback: bool = False
    aht_s: float = 180.0
    staffed: int = 0
    free: int = 0


def _key(call_sid: str) -> str:
    return f"hold:{call_sid}"


async def write_hold(redis: aioredis.Redis, call_sid: str, rec: HoldRecord) -> None:
    mapping = {
        "q": rec.queue_id,
        "deadline": rec.deadline_ms,
        "every": rec.every_ms,
        "last": rec.last_announce_ms,
        "seg": rec.segment_s,
        "music": rec.music_url or "",
        "msg": rec.hold_message or "",
        "pos": int(rec.announce_position),
        "ewt": int(rec.announce_wait),
        "cb": int(rec.offer_callback),
        "aht": rec.aht_s,
        "staffed": rec.staffed,
        "free": rec.free,
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(_key(call_sid), mapping=mapping)
        pipe.expire(_key(call_sid), HOLD_TTL_S)
        await pipe.execute()


async def clear_hold(redis: aioredis.Redis, call_sid: str) -> None:
    await redis.delete(_key(call_sid))


class HoldPoller:
    """`answer(sid)`: the next hold segment for a data-less return, or None to forward it.

    Polls also drive dispatch (at most once per `dispatch_every_ms` per queue): with polls
    answered here no workflow activity runs while callers wait, and an agent whose wrap-up
    has just ended frees up without any event. Give it the app's `RoutingStore` (rebuilds
    and mirrors to PostgreSQL); without one it uses a bare store on the same Redis, whose
    reservations are mirrored at the agent's next mirrored change.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        store: RoutingStore | None = None,
        *,
        dispatch_every_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.store = store or RoutingStore(redis)
        self.dispatch_every_ms = dispatch_every_ms
        self._poll = redis.register_script(_POLL)

    async def answer(self, call_sid: str, now_ms: int | None = None) -> Hold | None:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        result = await self._poll(
            keys=[_key(call_sid), f"qe:{call_sid}"],
            args=[now, call_sid, self.dispatch_every_ms],
        )
        if int(result[0]) != 1:
            return None
        (
            _,
            position,
            due,
            deadline,
            seg,
            music,
            msg,
            pos_on,
            ewt_on,
            aht,
            staffed,
            free,
            queue_id,
            dispatch,
        ) = result
        if int(dispatch) and await self._dispatch(int(queue_id), call_sid):
            return None  # an agent was reserved for this very caller: the workflow dials
        position = int(position)
        remaining_s = max(1.0, (int(deadline) - now) / 1000)
        segment = min(float(seg), remaining_s)
        announcements = []
        if int(due):
            ewt = position_wait_s(position, int(staffed), float(aht), int(free))
            words = announcement(
                position=position,
                ewt_s=ewt,
                hold_message=msg or None,
                announce_position=pos_on == "1",
                announce_wait=ewt_on == "1",
            )
            announcements = [Say(text=" ".join(words))]
        return Hold(duration_s=segment, music_url=music or None, announcements=announcements)

    async def _dispatch(self, queue_id: int, call_sid: str) -> bool:
        """Offer free agents to the queue; True if this caller got one."""
        try:
            made = await self.store.dispatch(queue_id)
        except Exception:  # routing state being rebuilt: the next poll tries again
            log.warning("hold_poll_dispatch_failed", queue_id=queue_id, exc_info=True)
            return False
        return any(a.call_sid == call_sid for a in made)


async def hold_seen_ms(redis: aioredis.Redis, call_sid: str) -> int | None:
    """When the API last answered this queued call's hold poll (None: never / not queued)."""
    raw = await redis.hget(f"qe:{call_sid}", "seen")
    return int(raw) if raw else None
