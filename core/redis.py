"""The Redis client factory; whoever owns the process builds one and closes it."""

from __future__ import annotations

import redis.asyncio as aioredis

MAX_CONNECTIONS = 200


def make_redis(
    url: str, *, decode_responses: bool = True, timeout_s: float = 5.0
) -> aioredis.Redis:
    """An asyncio Redis client (pooled; connects lazily on first command).

    The pool blocks for up to `timeout_s` when all its connections are busy instead of
    raising "Too many connections": a burst of webhooks waits a moment rather than failing.
    """
    if not url:
        raise ValueError("REDIS_URL is not set (run `ivr dev`, or set REDIS_URL)")
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_s,
        decode_responses=decode_responses,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)
