"""The seam between carrier adapters and the call engine.

Adapters parse webhooks into `CallEvent`s and render `Reply`s; everything about how a call is
run (Temporal, the webhook budget fallback, caching) sits behind `CallGateway`. Routers get it
from `request.app.state.call_gateway`, so tests mount the same routers over a scripted fake.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Protocol

import structlog
from fastapi import Depends, Request

from core.telephony import CallEvent, Dialect, Reply

log = structlog.get_logger(__name__)

# Carriers retry a status callback not answered in time (Exotel: 200 within 15 s).
END_TIMEOUT_S = 5.0


class UnknownCall(LookupError):
    """No call with this CallSid is running (and the event may not start one)."""

    def __init__(self, call_sid: str) -> None:
        super().__init__(f"no call {call_sid}")
        self.call_sid = call_sid


class CallOver(RuntimeError):
    """The call has already ended; nothing more can be asked of it."""

    def __init__(self, call_sid: str) -> None:
        super().__init__(f"call {call_sid} is over")
        self.call_sid = call_sid


class CallGateway(Protocol):
    async def advance(
        self, event: CallEvent, *, update_id: str, dialect: Dialect, start: bool
    ) -> Reply:
        """Send `event` to the call's workflow as an update and return the segment to render.

        `start=True` uses update-with-start (a first webhook starts the call; a retry of it
        lands on the same workflow). The same `update_id` twice returns the same reply without
        advancing the call. Raises `UnknownCall` (start=False and no such call) or `CallOver`.
        """
        ...

    async def pending(self, call_sid: str) -> Reply | None:
        """The reply last handed out to the carrier (Exotel's applets read it); no side effects.

        Raises `UnknownCall` for a call that never existed; None when nothing is pending.
        """
        ...

    async def end(self, event: CallEvent) -> None:
        """The carrier says the call is over (status callback); idempotent."""
        ...


async def get_call_gateway(request: Request) -> CallGateway:
    """The app's gateway; the Temporal one is built on first use from the lifespan's clients.

    `async` although it never awaits: FastAPI runs a plain `def` dependency in a worker
    thread, a hand-off every webhook would pay for nothing."""
    state = request.app.state
    gateway = getattr(state, "call_gateway", None)
    if gateway is None:
        from api.call_gateway import TemporalCallGateway
        from api.opening import schedule_loader
        from core.call_records import StartRecorder
        from core.events import EventPublisher
        from core.repositories.flows import make_flow_resolver, make_version_loader

        gateway = TemporalCallGateway(
            lambda: getattr(state, "temporal", None),
            state.redis,
            state.settings,
            make_flow_resolver(state.sessionmaker),
            record_start=StartRecorder(state.sessionmaker, EventPublisher(state.redis)),
            schedules=(
                schedule_loader(state.sessionmaker, state.settings.schedule_clock)
                if state.settings.api_walks_opening
                else None
            ),
            walk_turns=state.settings.api_walks_turns,
            load_version=make_version_loader(state.sessionmaker),
        )
        state.call_gateway = gateway
    return gateway  # type: ignore[no-any-return]


CallGatewayDep = Annotated[CallGateway, Depends(get_call_gateway)]


async def deliver_end(gateway: CallGateway, event: CallEvent) -> None:
    """Pass a status callback on without ever failing the carrier's request.

    A call we no longer run needs nothing; a signal that cannot be delivered only delays the
    end, since the workflow ends a silent call by itself.
    """
    try:
        await asyncio.wait_for(gateway.end(event), timeout=END_TIMEOUT_S)
    except (UnknownCall, CallOver):
        log.info("status_for_call_not_running", call_sid=event.call_sid)
    except Exception:
        log.exception("status_not_delivered", call_sid=event.call_sid)
