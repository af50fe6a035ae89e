"""Activities that ask the carrier's REST API about a call."""

from __future__ import annotations

import httpx
import structlog
from temporalio import activity

from core.calls import CarrierStatus, CarrierStatusRequest
from core.config import Settings
from core.exotel import ExotelClient, ExotelError

log = structlog.get_logger(__name__)


class CarrierActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.exotel = ExotelClient(settings, http) if settings.exotel_configured else None

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
        return [self.carrier_call_status]
