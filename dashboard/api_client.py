"""The dashboard's only way to the platform: a small typed client of the REST API.

One `httpx.Client` (connection pool) is shared by every browser session; each session holds
its own `ApiClient` with that user's tokens. A 401 is answered by one token refresh and a
retry; every failure surfaces as `ApiError` with a message fit to show an operator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = dict[str, Any]
DEFAULT_TIMEOUT_S = 15.0
MAX_PAGE = 200  # the API's cap on ?limit= for list endpoints


def api_url() -> str:
    """The API's base URL: IVR_API_URL (set by `ivr dev`), else IVR_API_HOST/IVR_API_PORT."""
    explicit = os.environ.get("IVR_API_URL")
    if explicit:
        return explicit.rstrip("/")
    host = os.environ.get("IVR_API_HOST", "127.0.0.1")
    port = os.environ.get("IVR_API_PORT", "8000")
    return f"http://{host}:{port}"


class ApiError(Exception):
    """A request that did not succeed, with a message for people rather than a traceback."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        problems: list[JSON] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.problems = problems or []

    @property
    def missing_endpoint(self) -> bool:
        """The API does not have this route at all (an older API, or a feature not built)."""
        return self.status in (404, 405) and self.code in (None, "not_found", "method_not_allowed")

    def __str__(self) -> str:
        return self.message


class SessionExpired(ApiError):
    """The access token was refused and could not be refreshed: sign in again."""


_FRIENDLY = {
    400: "The request was not accepted",
    401: "Your session has ended",
    403: "Your role does not allow this",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    422: "Some values are not valid",
    429: "Too many attempts",
    500: "The API hit an unexpected error",
    502: "The API is unreachable behind its proxy",
    503: "A service the API needs is down",
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The API's `{"error", "detail"}` shape (plus flow `problems`) as an ApiError."""
    code: str | None = None
    detail: str = ""
    problems: list[JSON] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        raw = body.get("detail")
        if isinstance(raw, str):
            detail = raw
        elif isinstance(raw, list):  # FastAPI's default validation shape
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                for e in raw
                if isinstance(e, dict)
            )
        if isinstance(body.get("problems"), list):
            problems = [p for p in body["problems"] if isinstance(p, dict)]
    lead = _FRIENDLY.get(response.status_code, f"The API answered {response.status_code}")
    if response.status_code == 404 and code is None and not detail:
        detail = f"the API has no {response.request.method} {response.request.url.path}"
    status = response.status_code
    message = f"{lead} ({status}): {detail}" if detail else f"{lead} ({status})"
    cls = SessionExpired if response.status_code == 401 else ApiError
    return cls(message, status=response.status_code, code=code, problems=problems)


def make_http(base_url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> httpx.Client:
    return httpx.Client(base_url=base_url or api_url(), timeout=timeout_s)


@dataclass
class Me:
    id: int
    username: str
    role: str
    full_name: str | None
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def display_name(self) -> str:
        return self.full_name or self.username


@dataclass
class ApiClient:
    """One signed-in user's view of the API."""

    http: httpx.Client
    access_token: str | None = None
    refresh_token: str | None = None
    me: Me | None = None
    refreshes: int = field(default=0)

    # --- auth ----------------------------------------------------------------------------

    def login(self, username: str, password: str) -> Me:
        """Sign in; raises ApiError with the API's reason (wrong password, locked out...)."""
        try:
            response = self.http.post(
                "/api/auth/login", json={"username": username, "password": password}
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self.http, exc) from exc
        if response.status_code != 200:
            err = error_from_response(response)
            if response.status_code == 401:
                raise ApiError("Wrong username or password.", status=401, code=err.code)
            raise err
        self._take_tokens(response.json())
        self.me = self.load_me()
        return self.me

    def logout(self) -> None:
        if self.refresh_token and self.access_token:
            try:
                self.http.post(
                    "/api/auth/logout",
                    json={"refreshToken": self.refresh_token},
                    headers=self._headers(),
                )
            except httpx.HTTPError:
                pass  # signing out locally is what matters
        self.access_token = self.refresh_token = None
        self.me = None

    def load_me(self) -> Me:
        body = self.get("/api/auth/me")
        return Me(
            id=int(body["id"]),
            username=str(body["username"]),
            role=str(body["role"]),
            full_name=body.get("fullName"),
            permissions=frozenset(body.get("permissions") or ()),
        )

    def refresh(self) -> None:
        if not self.refresh_token:
            raise SessionExpired("Your session has ended; please sign in again.", status=401)
        try:
            response = self.http.post(
                "/api/auth/refresh", json={"refreshToken": self.refresh_token}
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self.http, exc) from exc
        if response.status_code != 200:
            self.access_token = self.refresh_token = None
            raise SessionExpired(
                "Your session has ended; please sign in again.", status=401, code="unauthorized"
            )
        self._take_tokens(response.json())
        self.refreshes += 1

    def _take_tokens(self, body: JSON) -> None:
        self.access_token = body["accessToken"]
        self.refresh_token = body["refreshToken"]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    # --- requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """A successful response; ApiError otherwise (after one refresh on a 401)."""
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        for attempt in (1, 2):
            try:
                response = self.http.request(
                    method,
                    path,
                    params=clean or None,
                    json=json,
                    headers=self._headers(),
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.HTTPError as exc:
                raise _unreachable(self.http, exc) from exc
            if response.status_code == 401 and attempt == 1 and self.refresh_token:
                self.refresh()
                continue
            if response.is_success:
                return response
            raise error_from_response(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        response = self.request("POST", path, params=params, json=body)
        return response.json() if response.content else None

    def put(self, path: str, body: Any) -> Any:
        response = self.request("PUT", path, json=body)
        return response.json() if response.content else None

    def patch(self, path: str, body: Any) -> Any:
        response = self.request("PATCH", path, json=body)
        return response.json() if response.content else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def items(self, path: str, *, limit: int = MAX_PAGE, **params: Any) -> list[JSON]:
        """Every item of an offset-paged list endpoint (`{items, total, offset, limit}`)."""
        out: list[JSON] = []
        offset = 0
        while True:
            page = self.get(path, offset=offset, limit=limit, **params)
            batch = page.get("items", [])
            out.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total", 0)):
                return out

    def download(self, path: str, **params: Any) -> bytes:
        return self.request("GET", path, params=params, timeout_s=120).content


def _unreachable(http: httpx.Client, exc: httpx.HTTPError) -> ApiError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is not reachable"
    return ApiError(
        f"The API at {http.base_url} {kind}. Is it running? ({type(exc).__name__})",
        code="unreachable",
    )
