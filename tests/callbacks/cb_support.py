"""Helpers the callback tests import (tests are not a package, so not from conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.callbacks import CallbackMode, CallbackStart
from core.config import Settings
from core.db.models import VoiceCallback
from core.repositories import callbacks as repo

WEBHOOK_TOKEN = "callbacks-test-webhook-token-0123456789"


async def new_callback(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    phone: str = "+919812345678",
    mode: CallbackMode = CallbackMode.flow,
    scheduled_at: datetime | None = None,
    max_attempts: int = 3,
    retry_delay_s: int = 60,
    queue_id: int | None = None,
    agent_id: int | None = None,
    flow_id: int | None = None,
    **start: Any,
) -> CallbackStart:
    """A voice_callbacks row (as the API would write it) and the workflow input for it."""
    async with sessionmaker.begin() as session:
        row, _ = await repo.create(
            session,
            repo.NewCallback(
                phone_number=phone, scheduled_at=scheduled_at, asap=scheduled_at is None,
                queue_id=queue_id, flow_id=flow_id, agent_id=agent_id, note=None,
                max_attempts=max_attempts, retry_delay_s=retry_delay_s,
            ),
        )
        callback_id = row.id
    return CallbackStart(
        callback_id=callback_id, phone_number=phone, mode=mode, scheduled_at=scheduled_at,
        max_attempts=max_attempts, retry_delay_s=retry_delay_s, queue_id=queue_id,
        agent_id=agent_id, flow_id=flow_id,
        ring_timeout_s=settings.callback_ring_timeout_s,
        time_limit_s=settings.callback_time_limit_s,
        status_grace_s=settings.callback_status_grace_s,
        **start,
    )


async def load(sessionmaker: async_sessionmaker[AsyncSession], callback_id: int) -> VoiceCallback:
    async with sessionmaker() as session:
        return await repo.get(session, callback_id)


async def eventually(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
