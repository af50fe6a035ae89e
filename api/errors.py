"""One error shape for every failure: `{"error": code, "detail": message}`.

Expected failures are `core.errors.AppError`s; validation, routing and HTTP errors from FastAPI
and Starlette are mapped onto the same shape. Unexpected exceptions are answered by the request
middleware (`api.middleware`), which is the only place that sees them with the request id.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import AppError

_MAX_ERRORS_SHOWN = 10
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def internal_error_response(request_id: str) -> JSONResponse:
    """What a client sees of a bug: an apology and the id to quote, never the traceback."""
    return error_response(
        500,
        "internal_error",
        f"an unexpected error occurred; quote request id {request_id} when reporting it",
        headers={"X-Request-ID": request_id},
    )


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status, exc.code, exc.detail, exc.headers or None)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def describe_validation_errors(errors: list[Any] | tuple[Any, ...]) -> str:
    """`body.password: Field required; query.limit: ...` (never echoes the input values)."""
    parts = [f"{_loc(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in errors]
    if len(parts) > _MAX_ERRORS_SHOWN:
        parts = [*parts[:_MAX_ERRORS_SHOWN], f"and {len(parts) - _MAX_ERRORS_SHOWN} more"]
    return "; ".join(parts) or "invalid request"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            loc = err.get("loc", ())
            position = loc[1] if len(loc) > 1 else "?"
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            return error_response(
                400,
                "malformed_json",
                f"request body is not valid JSON: {reason} at position {position}",
            )
    return error_response(422, "invalid_input", describe_validation_errors(errors))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    try:
        fallback = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        fallback = "http_error"
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return error_response(status, _HTTP_CODES.get(status, fallback), detail, exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
