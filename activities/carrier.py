"""Activities that ask whether a call is still up: the carrier's REST API, or the API's own
record of a queued caller's last hold poll (which it answers without the workflow)."""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from temporalio import activity

from core.calls import CarrierStatus, CarrierStatusRequest
from core.config import Settings
from core.exotel import ExotelClient, ExotelError
from core.routing.hold import hold_seen_ms

log = structlog.get_logger(__name__)


class CarrierActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient, redis: Any = None) -> None:
        self.exotel = ExotelClient(settings, http) if settings.exotel_configured else None
        self.redis = redis

    @activity.defn(name="call_hold_seen")
    async def call_hold_seen(self, call_sid: str) -> int | None:
        """When the API last answered this queued caller's hold poll (epoch ms), if ever."""
        if self.redis is None:
            return None
        return await hold_seen_ms(self.redis, call_sid)

    @activity.defn(name="carrier_call_status")
    async def carrier_call_status(self, req: CarrierStatusRequest) -> CarrierStatus:
        """Is the call still up at the carrier? Unknown without credentials (never an error)."""
        if req.carrier != "exotel" or self.exotel is None:
            return CarrierStatus(known=False)
        try:
            details = await self.exotel.call_details(req.call_sid)
        except ExotelError as err:
            if err.retryable:
                raise  # 429 / 5xx: the activity's retry policy backs off
            log.warning("carrier_status_refused", call_sid=req.call_sid, status=err.status)
            return CarrierStatus(known=False, error=str(err))
        if details is None:
            return CarrierStatus(known=False, error="unknown to the carrier")
        return CarrierStatus(
            known=True, status=details.status, live=details.live, duration_s=details.duration_s
        )

    def all(self) -> list:
        return [self.carrier_call_status, self.call_hold_seen]
