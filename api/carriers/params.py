"""Tolerant parsing, strict validation: what every carrier webhook goes through first.

Carriers send the same facts under different spellings (`CallFrom`/`From`, `digits`/`Digits`),
in the query or the body, as form data or JSON, sometimes with a literal `"null"`. `Params`
reads them case-insensitively; the helpers below turn them into validated values or raise a
4xx `AppError` that names the field. Carrier routers use `CarrierRoute`, which renders those
errors as `{"error","detail"}` and turns anything unexpected into a 503, never a 500.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.errors import describe_validation_errors, error_response
from core.config import Settings, get_settings
from core.errors import AppError, InvalidInput
from core.phone import to_e164
from core.telephony import DialStatus

log = structlog.get_logger(__name__)

MAX_VALUE_BYTES = 1024
MAX_QUERY_BYTES = 8 * 1024
MAX_BODY_BYTES = 16 * 1024
CALL_SID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
DIGITS_RE = re.compile(r"[0-9*#]*")
MAX_TURN = 100_000
# Words carriers put where a value is absent.
_ABSENT = frozenset({"null", "none", "undefined"})
_DIAL_STATUS_ALIASES = {
    "answered": DialStatus.completed,  # Twilio: the agent answered, the caller hung up first
    "cancelled": DialStatus.canceled,
    "noanswer": DialStatus.no_answer,
}


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status = 413
    default_detail = "request too large"


class UnsupportedMediaType(AppError):
    code = "unsupported_media_type"
    status = 415
    default_detail = "send form data or JSON"


class CarrierUnavailable(AppError):
    code = "unavailable"
    status = 503
    default_detail = "the call engine is not reachable; try again"


def bad_request(detail: str) -> InvalidInput:
    return InvalidInput(detail, status=400)


class Params:
    """A webhook's parameters, query and body together, looked up case-insensitively."""

    def __init__(
        self, query: list[tuple[str, str]], body: list[tuple[str, str]] | None = None
    ) -> None:
        self.body_pairs = body or []  # as sent, for signature checks
        # A JSON body as sent, nested values too (Exotel's `Legs`), for storing it raw.
        self.document: dict[str, Any] | None = None
        self._values: dict[str, str] = {}
        for key, value in [*query, *self.body_pairs]:
            self._values.setdefault(key.lower(), value)

    def raw(self, *names: str) -> str | None:
        """The first of `names` present (even empty), stripped; None if absent or "null"."""
        for name in names:
            value = self._values.get(name.lower())
            if value is None:
                continue
            value = value.strip()
            if value.lower() in _ABSENT:
                continue
            return value
        return None

    def text(self, *names: str) -> str | None:
        """Like `raw`, but an empty value counts as absent."""
        return self.raw(*names) or None

    def canonical(self, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
        skip = {name.lower() for name in exclude}
        return sorted((k, v.strip()) for k, v in self._values.items() if k not in skip)


def _check_sizes(pairs: Iterable[tuple[str, str]]) -> None:
    for key, value in pairs:
        if len(key.encode()) > MAX_VALUE_BYTES:
            raise bad_request("a parameter name is longer than 1 kB")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise bad_request(f"parameter {key[:64]!r} is longer than 1 kB")


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON (and PostgreSQL's jsonb refuses them when stored raw).
    raise ValueError(f"{name} is not valid JSON")


def _json_document(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_request("request body is not valid JSON") from err
    if not isinstance(data, dict):
        raise bad_request("JSON body must be an object")
    return data


def _json_pairs(data: dict[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, str | int | float):
            pairs.append((key, str(value)))
        # Nested values (Exotel's `Legs`) carry nothing an adapter reads: skipped.
    return pairs


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode()
    except UnicodeDecodeError as err:
        raise bad_request("form body is not UTF-8") from err
    return parse_qsl(text, keep_blank_values=True)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge("request body is larger than 16 kB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge("request body is larger than 16 kB")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_params(request: Request) -> Params:
    """Query and body (form or JSON) of a carrier webhook, size-checked."""
    cached = getattr(request.state, "carrier_params", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if len(request.url.query.encode()) > MAX_QUERY_BYTES:
        raise PayloadTooLarge("query string is longer than 8 kB")
    query = list(request.query_params.multi_items())
    body_pairs: list[tuple[str, str]] = []
    document: dict[str, Any] | None = None
    if request.method in ("POST", "PUT", "PATCH"):
        body = await _read_body(request)
        if body.strip():
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == "application/json" or content_type.endswith("+json"):
                document = _json_document(body)
                body_pairs = _json_pairs(document)
            elif content_type in ("", "application/x-www-form-urlencoded", "text/plain"):
                body_pairs = _form_pairs(body)
            else:
                raise UnsupportedMediaType(f"unsupported content type {content_type!r}")
    _check_sizes(query)
    _check_sizes(body_pairs)
    params = Params(query, body_pairs)
    params.document = document
    request.state.carrier_params = params
    return params


# --- field helpers -------------------------------------------------------------------------------


def call_sid(params: Params) -> str:
    """The validated CallSid, also bound to every log line of this request."""
    value = params.text("CallSid")
    if value is None:
        raise bad_request("CallSid is required")
    if not CALL_SID_RE.fullmatch(value):
        raise bad_request("CallSid must be 1-64 letters, digits, '-' or '_'")
    structlog.contextvars.bind_contextvars(call_sid=value)
    return value


def digits(params: Params, *names: str) -> str | None:
    """Keys pressed, without the quotes Exotel wraps them in; "" when nothing was pressed."""
    value = params.raw(*names)
    if value is None:
        return None
    value = value.strip().strip('"').strip()
    if not DIGITS_RE.fullmatch(value):
        raise bad_request(f"{names[0]} may contain only 0-9, * and #")
    return value


def phone(params: Params, *names: str) -> str | None:
    """The first of `names` as E.164; None when absent or not a phone number (withheld)."""
    raw = params.text(*names)
    return to_e164(raw) if raw is not None else None


def dial_status(params: Params, name: str) -> DialStatus | None:
    value = params.text(name)
    if value is None:
        return None
    key = value.lower().replace("_", "-")
    try:
        return DialStatus(key)
    except ValueError:
        pass
    known = _DIAL_STATUS_ALIASES.get(key.replace("-", ""))
    if known is None:
        # A status we don't know must not drop the caller: treat the dial as failed.
        log.warning("unknown_dial_status", value=value[:32])
        return DialStatus.failed
    return known


def seconds(params: Params, name: str) -> float | None:
    value = params.text(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def url(params: Params, name: str) -> str | None:
    value = params.text(name)
    if value is None:
        return None
    if not value.lower().startswith(("http://", "https://")):
        raise bad_request(f"{name} must be an http(s) URL")
    return value


def turn(params: Params) -> int | None:
    value = params.text("turn")
    if value is None:
        return None
    if not value.isdigit() or int(value) > MAX_TURN:
        raise bad_request("turn must be a whole number")
    return int(value)


def direction(params: Params) -> str:
    value = (params.text("Direction") or "").lower()
    return "outbound" if value.startswith("outbound") else "inbound"


def fingerprint(sid: str, params: Params, exclude: Iterable[str] = (), salt: str = "") -> str:
    """An update id for a request: a carrier retry of it (same parameters) gets the same one."""
    canonical = json.dumps([params.canonical(exclude), salt], separators=(",", ":"))
    return f"{sid}:{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"


# --- routing -------------------------------------------------------------------------------------


def carrier_settings(request: Request) -> Settings:
    settings = getattr(request.app.state, "settings", None)
    return settings if settings is not None else get_settings()


class CarrierRoute(APIRoute):
    """Carrier webhooks never answer 500: errors are `{"error","detail"}`, a crash is a 503.

    `AppError`s keep their status; a `LookupError` from the engine (no such call, no flow for
    the number called) is a 404.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except AppError as exc:
                return error_response(exc.status, exc.code, exc.detail, exc.headers or None)
            except RequestValidationError as exc:
                return error_response(
                    400, "bad_request", describe_validation_errors(list(exc.errors()))
                )
            except HTTPException:
                raise
            except LookupError as exc:
                # The engine found no such call, or no flow answers the number called.
                return error_response(404, "not_found", str(exc) or "not found")
            except Exception:
                log.exception("carrier_webhook_failed", path=request.url.path)
                unavailable = CarrierUnavailable()
                return error_response(unavailable.status, unavailable.code, unavailable.detail)

        return guarded


F = TypeVar("F", bound=Callable[..., Any])


def each_method(router: APIRouter, path: str, methods: Sequence[str]) -> Callable[[F], F]:
    """Register a webhook under several HTTP methods as one route per method, so each gets
    its own OpenAPI operation id (one route with several methods repeats its id)."""

    def register(endpoint: F) -> F:
        for method in methods:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                operation_id=f"{endpoint.__name__}_{method.lower()}",
            )
        return endpoint

    return register
