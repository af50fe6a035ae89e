"""Activities of the logic nodes: loading business-hours schedules, and the API node's HTTP.

`call_api` never raises for what the far end does: a refused host, a timeout, a 500, a huge
or non-JSON body all come back as an `ApiCallResult` whose outcome picks the node's port. Only
a bug raises (the workflow then also takes the `error` port).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.business_hours import (
    ScheduleBundle,
    ScheduleRequest,
)
from core.config import Settings
from core.flows import vault
from core.flows.api_call import (
    MAX_VARIABLE_CHARS,
    MISSING,
    ApiCallRequest,
    ApiCallResult,
    json_path,
)
from core.flows.inputs import (
    SealedInputCheck,
    SealedInputResult,
    mask_value,
    spoken_for_confirm,
    validate_input,
)
from core.http_guard import Allowlist, ForbiddenHost, literal_address, resolve_checked
from core.repositories import business_hours as hours_repo

log = structlog.get_logger(__name__)

MAX_REDIRECTS = 3
RETRY_STATUSES = frozenset({502, 503, 504})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class _Refused(Exception):
    """The request cannot be made or its answer cannot be used (→ the error port)."""


class _RedactPinnedUrls(logging.Filter):
    """httpx logs every request's full URL at INFO. API node requests (and only they) go to
    a pinned IP address, and their paths and queries may carry what a caller typed: log
    those as scheme://address/… instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], httpx.URL):
            url = args[1]
            if literal_address(url.host) is not None and (url.path != "/" or url.query):
                record.args = (args[0], f"{url.scheme}://{url.netloc.decode()}/…", *args[2:])
        return True


def _install_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactPinnedUrls) for f in logger.filters):
        logger.addFilter(_RedactPinnedUrls())


class LogicActivities:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.http = http
        self.redis = redis  # the call vault of sensitive input (None: nothing sealed here)
        self.allowlist = Allowlist.parse(settings.api_allowlist_entries)
        _install_redaction()

    # --- business hours ---------------------------------------------------------------------

    @activity.defn(name="load_business_hours")
    async def load_business_hours(self, req: ScheduleRequest) -> ScheduleBundle:
        """Schedules with their public holidays resolved around `req.at`, for the workflow
        to check at its own clock (or the test clock, when configured)."""
        async with self.sessionmaker() as session:
            return await hours_repo.bundle(session, req, clock=self.settings.schedule_clock)

    # --- sensitive gather input -------------------------------------------------------------

    @activity.defn(name="check_sealed_input")
    async def check_sealed_input(self, req: SealedInputCheck) -> SealedInputResult:
        """Validate keys the API sealed in the call vault; the workflow learns only valid or
        why not, the mask and the read-back. A valid value replaces the raw keys under the
        same reference (what an API node sends on); an invalid one is forgotten."""
        if self.redis is None:
            return SealedInputResult(found=False)
        found = await vault.open_sealed(self.redis, req.call_sid, {req.ref})
        typed = found.get(req.ref)
        if typed is None:
            log.warning("sealed_input_missing", call_sid=req.call_sid)
            return SealedInputResult(found=False)
        result = validate_input(req.config, typed)
        if not result.ok:
            await self.redis.hdel(vault.vault_key(req.call_sid), req.ref)
            return SealedInputResult(found=True, ok=False, reason=result.reason,
                                     masked=mask_value(typed))
        value = str(result.value)
        await vault.seal(self.redis, req.call_sid, req.ref, value)
        return SealedInputResult(found=True, ok=True, masked=mask_value(value),
                                 spoken=spoken_for_confirm(result, True))

    @activity.defn(name="drop_call_vault")
    async def drop_call_vault(self, call_sid: str) -> None:
        """The call is over: forget every sensitive value its caller typed."""
        if self.redis is not None:
            await vault.drop(self.redis, call_sid)

    async def _unseal(self, req: ApiCallRequest) -> ApiCallRequest:
        """The request with the call vault's values where the workflow put placeholders."""
        refs = vault.placeholders_in([req.url, req.headers, req.body])
        if not refs:
            return req
        values = await vault.open_sealed(self.redis, req.call_sid, refs) if self.redis else {}
        if refs - values.keys():
            raise _Refused("a sensitive value the request needs has expired")
        return req.model_copy(update={
            "url": vault.fill(req.url, values),
            "headers": vault.fill(req.headers, values),
            "body": vault.fill(req.body, values),
        })

    # --- the API node -----------------------------------------------------------------------

    @activity.defn(name="call_api")
    async def call_api(self, req: ApiCallRequest) -> ApiCallResult:
        """One API node request: guarded, capped in time and size, retried only if idempotent."""
        started = time.monotonic()
        budget_s = min(req.timeout_s, self.settings.api_timeout_cap_s)
        deadline = started + budget_s
        attempts = 0
        result: ApiCallResult
        try:
            req = await self._unseal(req)
            url, headers = self._prepare(req)
            while True:
                attempts += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    async with asyncio.timeout(remaining):
                        status, content = await self._send(req, url, headers)
                except httpx.TransportError as exc:
                    if attempts <= req.retries and deadline - time.monotonic() > 0.05:
                        continue
                    raise _Refused(f"request failed: {type(exc).__name__}") from None
                if status in RETRY_STATUSES and attempts <= req.retries:
                    if deadline - time.monotonic() > 0.05:
                        continue
                result = self._result(req, status, content)
                break
        except TimeoutError:
            result = ApiCallResult(outcome="timeout", error=f"no answer within {budget_s:g}s")
        except ForbiddenHost as exc:
            result = ApiCallResult(outcome="error", error=f"forbidden host: {exc}")
        except _Refused as exc:
            result = ApiCallResult(outcome="error", status=_status_of(exc), error=str(exc))
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        result = result.model_copy(update={"elapsed_ms": elapsed_ms, "attempts": attempts})
        # The host only: paths and queries may carry what the caller typed.
        log.info("api_node_call", call_sid=req.call_sid, node_id=req.node_id, host=req.host,
                 method=req.method, outcome=result.outcome, status=result.status,
                 error=result.error, elapsed_ms=elapsed_ms, attempts=attempts)
        return result

    def _prepare(self, req: ApiCallRequest) -> tuple[httpx.URL, dict[str, str]]:
        try:
            url = httpx.URL(req.url)
        except (httpx.InvalidURL, ValueError):
            raise _Refused("the rendered URL is not valid") from None
        if url.scheme not in ("http", "https"):
            raise _Refused("only http and https URLs may be called")
        if url.userinfo:
            raise _Refused("credentials in the URL are not allowed (use secretHeaders)")
        if not req.host or url.host.lower() != req.host.lower():
            raise _Refused("the rendered URL does not keep the flow's host")
        headers = dict(req.headers)
        for header, name in req.secret_headers.items():
            value = self.settings.api_secret(name)
            if value is None:
                raise _Refused(f"secret {name} is not configured")
            headers[header] = value
        for key, value in headers.items():
            if "\r" in value or "\n" in value:
                raise _Refused(f"header {key} has a line break")
        return url, headers

    async def _send(
        self, req: ApiCallRequest, url: httpx.URL, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        method = req.method
        body: Any = req.body
        has_body = req.has_body
        for _hop in range(MAX_REDIRECTS + 1):
            port = url.port or (443 if url.scheme == "https" else 80)
            addresses = await resolve_checked(url.host, port, self.allowlist)
            response = await self._send_pinned(method, url, addresses, headers, body, has_body)
            try:
                if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                    location = response.headers["location"]
                    previous = url
                    try:
                        url = url.join(location)
                    except (httpx.InvalidURL, ValueError):
                        raise _Refused("redirect to an invalid URL") from None
                    if url.scheme not in ("http", "https"):
                        raise _Refused("redirect to a non-http URL")
                    if (url.scheme, url.host, url.port) != (
                        previous.scheme, previous.host, previous.port
                    ):
                        # Credentials never follow a redirect to another origin.
                        secret = {h.lower() for h in req.secret_headers} | _CREDENTIAL_HEADERS
                        headers = {k: v for k, v in headers.items() if k.lower() not in secret}
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method not in ("GET", "HEAD")
                    ):
                        method, body, has_body = "GET", None, False
                    continue
                content = await self._read_capped(response)
                return response.status_code, content
            finally:
                await response.aclose()
        raise _Refused(f"more than {MAX_REDIRECTS} redirects")

    async def _send_pinned(
        self,
        method: str,
        url: httpx.URL,
        addresses: list[Any],
        headers: dict[str, str],
        body: Any,
        has_body: bool,
    ) -> httpx.Response:
        """Send to the checked addresses in turn (the next one only if connecting fails):
        never the name again, so DNS rebinding between check and connect cannot slip in. The
        Host header and the TLS server name (certificate check included) stay the real host."""
        host_header = url.host if url.port is None else f"{url.host}:{url.port}"
        last: httpx.ConnectError | None = None
        for address in addresses:
            request = self.http.build_request(
                method,
                url.copy_with(host=str(address)),
                headers={**headers, "Host": host_header},
                json=body if has_body else None,
                extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
            )
            try:
                return await self.http.send(request, stream=True, follow_redirects=False)
            except httpx.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.settings.api_node_max_response_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise _Refused(f"response larger than {cap} bytes", )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise _Refused(f"response larger than {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _result(self, req: ApiCallRequest, status: int, content: bytes) -> ApiCallResult:
        if not 200 <= status < 300:
            return ApiCallResult(outcome="error", status=status, error=f"HTTP {status}")
        document: Any = None
        if content.strip():
            try:
                document = json.loads(content)
            except (ValueError, UnicodeDecodeError):
                if req.mappings or req.save_body:
                    return ApiCallResult(
                        outcome="error", status=status, error="the response is not JSON"
                    )
        variables: dict[str, Any] = {}
        for path, variable in req.mappings.items():
            value = json_path(document, path)
            if value is MISSING:
                continue
            if len(json.dumps(value, ensure_ascii=False)) > MAX_VARIABLE_CHARS:
                continue  # too big for a call variable; never worth failing the call over
            variables[variable] = value
        body = None
        if req.save_body:
            if len(json.dumps(document, ensure_ascii=False)) > MAX_VARIABLE_CHARS:
                return ApiCallResult(
                    outcome="error", status=status,
                    error=f"the response is larger than {MAX_VARIABLE_CHARS} characters "
                    "to keep in saveToVariable (map the fields you need instead)",
                )
            body = document
        return ApiCallResult(outcome="success", status=status, variables=variables, body=body)

    def all(self) -> list:
        return [self.load_business_hours, self.call_api, self.check_sealed_input,
                self.drop_call_vault]


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)
