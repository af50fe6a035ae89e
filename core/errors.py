"""Application errors: raised anywhere in `core` or `api`, rendered by one handler in `api.errors`.

Each error carries a stable machine-readable `code` (what clients branch on), an HTTP `status`
and a human `detail`. `core` stays free of web imports; only `api` knows how to render them.
"""

from __future__ import annotations

from collections.abc import Mapping


class AppError(Exception):
    """Base of every expected failure; unexpected ones become 500 `internal_error`."""

    code: str = "app_error"
    status: int = 400
    default_detail: str = "request failed"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.detail)


class NotFound(AppError):
    code = "not_found"
    status = 404
    default_detail = "not found"


class Conflict(AppError):
    code = "conflict"
    status = 409
    default_detail = "conflicts with the current state"


class Forbidden(AppError):
    code = "forbidden"
    status = 403
    default_detail = "not allowed"


class Unauthorized(AppError):
    """Missing or bad credentials; tells the client to authenticate with a bearer token."""

    code = "unauthorized"
    status = 401
    default_detail = "not authenticated"

    def __init__(
        self, detail: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class InvalidInput(AppError):
    """Input that parses but breaks a rule; 422 by default, 400 for a malformed request."""

    code = "invalid_input"
    status = 422
    default_detail = "invalid input"


class InvalidFlow(InvalidInput):
    code = "invalid_flow"
    default_detail = "the flow is not valid"


class RateLimited(AppError):
    code = "rate_limited"
    status = 429
    default_detail = "too many requests"

    def __init__(self, detail: str | None = None, *, retry_after_s: int) -> None:
        self.retry_after_s = max(1, int(retry_after_s))
        super().__init__(detail, headers={"Retry-After": str(self.retry_after_s)})
