"""The shared Redis client waits for a free connection instead of failing a burst."""

from __future__ import annotations

import asyncio

from core.redis import MAX_CONNECTIONS, make_redis


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(redis_url: str) -> None:
    redis = make_redis(redis_url)
    try:
        # Each BLPOP holds its connection for 0.2 s: more of them than the pool has.
        results = await asyncio.gather(
            *(redis.blpop([f"nothing:{i}"], timeout=0.2) for i in range(MAX_CONNECTIONS + 50))
        )
        assert results == [None] * (MAX_CONNECTIONS + 50)
        assert await redis.ping()
    finally:
        await redis.aclose()
