"""The Redis client factory; whoever owns the process builds one and closes it."""

from __future__ import annotations

import redis.asyncio as aioredis


def make_redis(
    url: str, *, decode_responses: bool = True, timeout_s: float = 5.0
) -> aioredis.Redis:
    """An asyncio Redis client (pooled; connects lazily on first command)."""
    if not url:
        raise ValueError("REDIS_URL is not set (run `ivr dev`, or set REDIS_URL)")
    return aioredis.from_url(
        url,
        decode_responses=decode_responses,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=30,
    )
