"""Programmatic schema management, shared by `ivr db`, `ivr dev` and the test fixtures.

TEMPORARY: builds the schema with metadata.create_all until the Alembic history lands;
the signatures below are the contract and stay.
"""

from __future__ import annotations

import asyncio

from core.db import models  # noqa: F401  (registers every table on Base.metadata)
from core.db.base import Base
from core.db.session import make_engine


async def _create_all(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (blocking; call from a thread in async code)."""
    asyncio.run(_create_all(url))
