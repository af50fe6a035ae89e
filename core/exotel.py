"""Exotel's REST API (v1), used only from activities.

Base URL per region, HTTP basic auth with the API key and token, the account SID in the path,
errors as `{"RestException": {"Status", "Message"}}`. Credentials come from settings and are
never logged. The callbacks issue adds outbound calls and SMS here.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel

from core.config import Settings

# Exotel's call statuses that mean the call is still up.
LIVE_STATUSES = frozenset({"queued", "ringing", "in-progress"})


class ExotelError(RuntimeError):
    """Exotel answered with an error (RestException) or something unusable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Exotel {status}: {message}")
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class CallDetails(BaseModel):
    sid: str
    status: str
    duration_s: float | None = None
    start_time: str | None = None
    end_time: str | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


class ExotelClient:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        if not settings.exotel_configured:
            raise ValueError("EXOTEL_SID, EXOTEL_API_KEY and EXOTEL_API_TOKEN must all be set")
        assert settings.exotel_api_key is not None and settings.exotel_api_token is not None
        self._auth = httpx.BasicAuth(
            settings.exotel_api_key.get_secret_value(),
            settings.exotel_api_token.get_secret_value(),
        )
        self._base = f"{settings.exotel_base_url}/v1/Accounts/{settings.exotel_sid}"
        self._http = http

    async def call_details(self, call_sid: str) -> CallDetails | None:
        """The call as Exotel sees it; None if Exotel does not know the call."""
        response = await self._http.get(
            f"{self._base}/Calls/{call_sid}.json", params={"details": "true"}, auth=self._auth
        )
        if response.status_code == 404:
            return None
        call = _body(response).get("Call")
        if not isinstance(call, dict) or not call.get("Status"):
            raise ExotelError(response.status_code, "no Call in the answer")
        duration = call.get("Duration")
        return CallDetails(
            sid=str(call.get("Sid") or call_sid),
            status=str(call["Status"]).lower(),
            duration_s=float(duration) if duration not in (None, "") else None,
            start_time=call.get("StartTime"),
            end_time=call.get("EndTime"),
        )


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        error = (body or {}).get("RestException", {}) if isinstance(body, dict) else {}
        message = str(error.get("Message") or response.text[:200] or response.reason_phrase)
        raise ExotelError(response.status_code, message)
    return body
