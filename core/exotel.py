"""Exotel's REST API (v1), used only from activities.

Base URL per region, HTTP basic auth with the API key and token, the account SID in the path,
form-encoded requests, errors as `{"RestException": {"Status", "Message"}}` turned into typed
`ExotelError`s. Credentials come from settings and are never logged (nor put in an error).

Retrying is the caller's business (the activity's retry policy): `ExotelError.retryable` says
whether asking again is sensible (429, 5xx), and `ExotelError.created_nothing` whether a failed
create certainly placed nothing, so that only such a create is ever sent again blindly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel

from core.config import Settings

# Exotel's call statuses that mean the call is still up.
LIVE_STATUSES = frozenset({"queued", "ringing", "in-progress"})
# Exotel writes its timestamps in IST without an offset.
EXOTEL_TZ = ZoneInfo("Asia/Kolkata")
_EXOTEL_TIME = "%Y-%m-%d %H:%M:%S"


class ExotelError(RuntimeError):
    """Exotel answered with an error (RestException) or something unusable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Exotel {status}: {message}")
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500

    @property
    def created_nothing(self) -> bool:
        """A create that failed like this placed nothing: 429 and 4xx are refusals before any
        work; a 5xx or garbage may come after the call was placed."""
        return 400 <= self.status < 500


class ExotelAuthError(ExotelError):
    """401/403: wrong credentials, inactive account, no balance."""


class ExotelBadRequest(ExotelError):
    """400/404/422: Exotel refuses these parameters (an invalid number, an unknown app)."""


class ExotelRateLimited(ExotelError):
    """429: past the ~200 requests a minute Exotel allows."""


class ExotelServerError(ExotelError):
    """5xx, or a 2xx whose body is not what the API documents."""


def exotel_error(status: int, message: str) -> ExotelError:
    """The typed error for an HTTP status."""
    if status == 429:
        return ExotelRateLimited(status, message)
    if status in (401, 403):
        return ExotelAuthError(status, message)
    if 400 <= status < 500:
        return ExotelBadRequest(status, message)
    return ExotelServerError(status, message)


class CallDetails(BaseModel):
    sid: str
    status: str
    duration_s: float | None = None
    start_time: str | None = None
    end_time: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    date_created: str | None = None
    custom_field: str | None = None
    recording_url: str | None = None
    conversation_duration_s: float | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


class PlacedCall(BaseModel):
    sid: str
    status: str


class SentSms(BaseModel):
    sid: str
    status: str
    detailed_status: str | None = None


class ExotelClient:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        if not settings.exotel_configured:
            raise ValueError("EXOTEL_SID, EXOTEL_API_KEY and EXOTEL_API_TOKEN must all be set")
        assert settings.exotel_api_key is not None and settings.exotel_api_token is not None
        self._auth = httpx.BasicAuth(
            settings.exotel_api_key.get_secret_value(),
            settings.exotel_api_token.get_secret_value(),
        )
        self.sid = settings.exotel_sid
        self._base = f"{settings.exotel_base_url}/v1/Accounts/{settings.exotel_sid}"
        self._http = http

    def app_url(self, app_id: str) -> str:
        """The `Url` that makes a call run one of the account's Exotel apps (flows)."""
        return f"http://my.exotel.com/{self.sid}/exoml/start_voice/{app_id}"

    async def call_details(self, call_sid: str) -> CallDetails | None:
        """The call as Exotel sees it; None if Exotel does not know the call."""
        response = await self._http.get(
            f"{self._base}/Calls/{call_sid}.json", params={"details": "true"}, auth=self._auth
        )
        if response.status_code == 404:
            return None
        call = _body(response).get("Call")
        if not isinstance(call, dict) or not call.get("Status"):
            raise ExotelServerError(response.status_code, "no Call in the answer")
        return _call_details(call, call_sid)

    async def find_calls(
        self,
        *,
        since: datetime,
        from_number: str | None = None,
        to_number: str | None = None,
        page_size: int = 50,
    ) -> list[CallDetails]:
        """Calls created since `since` (bulk call details, newest first). Exotel leaves calls
        still in progress out of this list, so an empty answer does not prove no call exists."""
        start = since.astimezone(EXOTEL_TZ)
        end = start + timedelta(days=1)
        params: dict[str, str] = {
            "DateCreated": f"gte:{start.strftime(_EXOTEL_TIME)};lte:{end.strftime(_EXOTEL_TIME)}",
            "SortBy": "DateCreated:desc",
            "PageSize": str(min(max(page_size, 1), 100)),
        }
        if from_number:
            params["From"] = from_number
        if to_number:
            params["To"] = to_number
        response = await self._http.get(f"{self._base}/Calls.json", params=params, auth=self._auth)
        calls = _body(response).get("Calls")
        if not isinstance(calls, list):
            raise ExotelServerError(response.status_code, "no Calls list in the answer")
        return [
            _call_details(item, "")
            for item in (c.get("Call", c) if isinstance(c, dict) else None for c in calls)
            if isinstance(item, dict) and item.get("Sid") and item.get("Status")
        ]

    async def connect_call(
        self,
        *,
        from_number: str,
        caller_id: str,
        to_number: str | None = None,
        app_id: str | None = None,
        custom_field: str | None = None,
        status_callback: str | None = None,
        time_limit_s: int | None = None,
        timeout_s: int | None = None,
        record: bool = False,
    ) -> PlacedCall:
        """Place a call (`Calls/connect.json`): `From` is rung first, then bridged to `To`
        (agent-first: From = agent, To = customer) or, with `app_id`, put into that Exotel app
        (From = customer). Not idempotent: never send it twice for one intent without first
        checking `find_calls` for the first one."""
        if (to_number is None) == (app_id is None):
            raise ValueError("give exactly one of to_number (bridge) or app_id (flow)")
        form: dict[str, str] = {"From": from_number, "CallerId": caller_id}
        if to_number is not None:
            form["To"] = to_number
        if app_id is not None:
            form["Url"] = self.app_url(app_id)
        if time_limit_s is not None:
            form["TimeLimit"] = str(min(int(time_limit_s), 14400))
        if timeout_s is not None:
            form["TimeOut"] = str(int(timeout_s))
        if record:
            form["Record"] = "true"
        if custom_field:
            form["CustomField"] = custom_field
        if status_callback:
            form["StatusCallback"] = status_callback
            form["StatusCallbackEvents[0]"] = "terminal"
            form["StatusCallbackContentType"] = "application/json"
        response = await self._http.post(
            f"{self._base}/Calls/connect.json", data=form, auth=self._auth
        )
        call = _body(response).get("Call")
        if not isinstance(call, dict) or not call.get("Sid"):
            raise ExotelServerError(response.status_code, "no Call Sid in the answer")
        return PlacedCall(sid=str(call["Sid"]), status=str(call.get("Status") or "queued").lower())

    async def send_sms(
        self,
        *,
        sender: str,
        to_number: str,
        body: str,
        dlt_entity_id: str | None = None,
        dlt_template_id: str | None = None,
        status_callback: str | None = None,
        custom_field: str | None = None,
    ) -> SentSms:
        """Send one SMS (`Sms/send.json`); DLT ids are required by Indian operators."""
        form: dict[str, str] = {"From": sender, "To": to_number, "Body": body}
        if dlt_entity_id:
            form["DltEntityId"] = dlt_entity_id
        if dlt_template_id:
            form["DltTemplateId"] = dlt_template_id
        if status_callback:
            form["StatusCallback"] = status_callback
        if custom_field:
            form["CustomField"] = custom_field
        response = await self._http.post(f"{self._base}/Sms/send.json", data=form, auth=self._auth)
        sms = _body(response).get("SMSMessage")
        if not isinstance(sms, dict) or not sms.get("Sid"):
            raise ExotelServerError(response.status_code, "no SMSMessage Sid in the answer")
        return SentSms(
            sid=str(sms["Sid"]),
            status=str(sms.get("Status") or "queued").lower(),
            detailed_status=sms.get("DetailedStatus"),
        )


def parse_exotel_time(value: str | None) -> datetime | None:
    """Exotel's `YYYY-MM-DD HH:MM:SS` (IST) as an aware datetime; None if absent or garbage."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), _EXOTEL_TIME).replace(tzinfo=EXOTEL_TZ)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _call_details(call: dict[str, Any], default_sid: str) -> CallDetails:
    details = call.get("Details") if isinstance(call.get("Details"), dict) else {}
    return CallDetails(
        sid=str(call.get("Sid") or default_sid),
        status=str(call["Status"]).lower(),
        duration_s=_number(call.get("Duration")),
        start_time=call.get("StartTime"),
        end_time=call.get("EndTime"),
        from_number=call.get("From"),
        to_number=call.get("To"),
        date_created=call.get("DateCreated"),
        custom_field=call.get("CustomField"),
        recording_url=call.get("RecordingUrl"),
        conversation_duration_s=_number((details or {}).get("ConversationDuration")),
    )


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        error = (body or {}).get("RestException", {}) if isinstance(body, dict) else {}
        if not isinstance(error, dict):
            error = {}
        message = str(error.get("Message") or response.text[:200] or response.reason_phrase)
        status = response.status_code if response.status_code >= 400 else 502
        raise exotel_error(status, message)
    return body
