"""A fake Exotel REST API on a real local HTTP server (the callbacks issue extends it).

Answers `GET /v1/Accounts/{sid}/Calls/{CallSid}.json` with Exotel's shapes: the statuses a
test scripts per call (served in order, the last one repeated), 404 `RestException` for an
unknown call, 401 for wrong credentials, and scripted 429s.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class FakeExotel:
    sid: str = "fakeacct"
    api_key: str = "fake-key"
    api_token: str = "fake-token"
    statuses: dict[str, list[str]] = field(default_factory=dict)
    throttle_next: int = 0  # answer this many requests with 429 first
    requests: list[str] = field(default_factory=list)
    _served: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/Accounts/{sid}/Calls/{call_file}")
        async def call_details(sid: str, call_file: str, request: Request) -> JSONResponse:
            call_sid = call_file.removesuffix(".json")
            self.requests.append(call_sid)
            expected = base64.b64encode(f"{self.api_key}:{self.api_token}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}" or sid != self.sid:
                return _error(401, "Authentication is required to view this resource.")
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return _error(429, "Too many requests")
            script = self.statuses.get(call_sid)
            if not script:
                return _error(404, f"Call {call_sid} not found")
            index = min(self._served[call_sid], len(script) - 1)
            self._served[call_sid] += 1
            return JSONResponse(
                {"Call": {"Sid": call_sid, "Status": script[index], "Duration": "42",
                          "StartTime": "2026-11-28 10:00:00", "EndTime": "2026-11-28 10:00:42"}}
            )

        return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"RestException": {"Status": status, "Message": message}}, status)
