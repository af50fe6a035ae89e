"""Per-request context: a request id on every log line and response, an access log, metrics,
and the last line of defence against unhandled exceptions.

Pure ASGI (not BaseHTTPMiddleware) so it sees the exception itself, keeps the contextvars
context of the request, and adds nothing to streaming responses.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, internal_error_response
from core.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

REQUEST_ID_HEADER = "x-request-id"
# A client-supplied id is kept only if it is short and plain: it goes into logs and the DB.
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_QUIET_PATHS = frozenset({"/health", "/metrics"})

log = structlog.stdlib.get_logger("api.access")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1").strip()
            return candidate if _REQUEST_ID_OK.match(candidate) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/users/{user_id}`), bounded for metric labels."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = False
        downstream_failed = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, downstream_failed
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [
                    h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            try:
                await send(message)
            except Exception:
                # The server or an outer layer refused the message (client gone, say): not a
                # bug of the app, and not ours to answer.
                downstream_failed = True
                raise

        begin = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                if downstream_failed:
                    raise
                log.exception("unhandled_error", method=scope["method"], path=scope.get("path", ""))
                status = 500
                if not started:
                    await internal_error_response(request_id)(scope, receive, send_with_id)
            finally:
                duration_s = time.perf_counter() - begin
                template = route_template(scope)
                labels = (scope["method"], template, str(status))
                HTTP_REQUESTS.labels(*labels).inc()
                HTTP_REQUEST_DURATION.labels(*labels).observe(duration_s)
                user = state.get("user")
                fields = {
                    "method": scope["method"],
                    "path": template,
                    "status": status,
                    "duration_ms": round(duration_s * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                    "user_id": getattr(user, "id", None),
                }
                if scope.get("path") in _QUIET_PATHS and status < 400:
                    log.debug("http_request", **fields)
                else:
                    log.info("http_request", **fields)


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes")


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with a 413 in the standard error shape.

    A declared Content-Length over the limit is refused before the app runs; a chunked body is
    counted as it is read, and the read raises BodyTooLarge (an HTTPException, so the handlers
    render it) once it goes over.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    response = error_response(
                        413, "payload_too_large", BodyTooLarge(self.max_bytes).detail
                    )
                    await response(scope, receive, send)
                    return
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, receive_counted, send)
