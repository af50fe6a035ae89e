"""Log in, refresh, log out, who am I."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import AuditDep, CurrentUser, RedisDep, SessionDep, SettingsDep, client_ip
from core.db.models import User
from core.errors import InvalidInput, RateLimited, Unauthorized
from core.metrics import LOGIN_ATTEMPTS
from core.permissions import permissions_for
from core.repositories import tokens as tokens_repo
from core.repositories import users as users_repo
from core.schemas import (
    ErrorOut,
    LoginRequest,
    LogoutRequest,
    MeOut,
    RefreshRequest,
    TokenPair,
    UserOut,
)
from core.security import (
    LoginThrottle,
    create_access_token,
    dummy_password_hash,
    hash_password_async,
    needs_rehash,
    verify_password_async,
)

router = APIRouter(prefix="/api/auth", tags=["auth"])
log = structlog.stdlib.get_logger(__name__)

_BAD_CREDENTIALS = "invalid username or password"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_LOGIN_SCHEMA = LoginRequest.model_json_schema(by_alias=True)
_LOGIN_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _LOGIN_SCHEMA},
            # What the Authorize button of /api/docs sends (OAuth2 password grant).
            "application/x-www-form-urlencoded": {"schema": _LOGIN_SCHEMA},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "bad or missing credentials"},
}


def _body_errors(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError(
        [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_input=False)]
    )


async def _read_credentials(request: Request) -> tuple[LoginRequest, bool]:
    """Credentials from a JSON body or the OAuth2 password form; True when it was the form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = content_type in _FORM_TYPES
    data: Any
    if is_form:
        form = await request.form(max_files=0, max_fields=16)
        grant_type = form.get("grant_type")
        if grant_type not in (None, "", "password"):
            raise InvalidInput("grant_type must be 'password'", status=400)
        data = {k: v for k in ("username", "password") if isinstance(v := form.get(k), str)}
    elif content_type == "application/json" or content_type.endswith("+json"):
        raw = await request.body()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ]
            ) from exc
        except UnicodeDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.start),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": "not UTF-8"},
                    }
                ]
            ) from exc
    else:
        raise StarletteHTTPException(
            415, "send JSON {username, password} or the OAuth2 password form"
        )
    try:
        return LoginRequest.model_validate(data), is_form
    except ValidationError as exc:
        raise _body_errors(exc) from exc


def _token_response(pair: TokenPair, *, rfc6749: bool) -> JSONResponse:
    body = pair.model_dump(mode="json", by_alias=True)
    if rfc6749:
        # OAuth2 clients (Swagger UI's Authorize) read the RFC 6749 snake_case names.
        body |= pair.model_dump(mode="json", by_alias=False)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def _issue_tokens(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: User,
    now: datetime,
    family_id: Any = None,
) -> tuple[TokenPair, Any]:
    raw, row = await tokens_repo.issue(
        session,
        user_id=user.id,
        ttl_s=settings.refresh_token_ttl_s,
        now=now,
        family_id=family_id,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )
    access, ttl_s = create_access_token(user_id=user.id, role=user.role, settings=settings, now=now)
    return TokenPair(access_token=access, refresh_token=raw, expires_in=ttl_s), row


@router.post(
    "/login",
    response_model=TokenPair,
    openapi_extra=_LOGIN_OPENAPI,
    responses={**_ERRORS, 429: {"model": ErrorOut, "description": "too many failed attempts"}},
)
async def login(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    audit: AuditDep,
) -> JSONResponse:
    """Log in with username and password (JSON or the OAuth2 password form)."""
    credentials, is_form = await _read_credentials(request)
    username, ip = credentials.username, client_ip(request)
    throttle = LoginThrottle(
        redis, max_failures=settings.login_max_failures, window_s=settings.login_failure_window_s
    )
    try:
        wait_s = await throttle.retry_after_s(username, ip)
    except RedisError:
        # Fail open: locking every operator out during a Redis outage is worse than losing
        # brute-force throttling for its duration (argon2 still makes each guess slow).
        log.warning("login_throttle_unavailable", exc_info=True)
        wait_s = 0
    if wait_s:
        LOGIN_ATTEMPTS.labels("throttled").inc()
        log.warning("login_throttled", username=username[:64], retry_after_s=wait_s)
        raise RateLimited(f"too many failed logins; try again in {wait_s} s", retry_after_s=wait_s)

    user = await users_repo.get_by_username(session, username)
    # Unknown users are checked against a dummy hash so both failures take the same time.
    stored = (
        user.password_hash if user is not None else await asyncio.to_thread(dummy_password_hash)
    )
    password_ok = await verify_password_async(stored, credentials.password)

    if user is None or not password_ok or not user.is_active:
        reason = (
            "unknown_user" if user is None else "bad_password" if not password_ok else "disabled"
        )
        LOGIN_ATTEMPTS.labels("failure").inc()
        try:
            await throttle.record_failure(username, ip)
        except RedisError:
            log.warning("login_throttle_unavailable", exc_info=True)
        await audit.record(
            "auth.login_failed",
            "user",
            user.id if user is not None else None,
            after={"username": username[:64], "reason": reason},
            actor=audit.actor(username=username, user_id=user.id if user is not None else None),
        )
        await session.commit()
        raise Unauthorized(_BAD_CREDENTIALS)

    now = datetime.now(UTC)
    if needs_rehash(user.password_hash):
        user.password_hash = await hash_password_async(credentials.password)
    await users_repo.record_login(session, user, now)
    pair, row = await _issue_tokens(request, session, settings, user, now)
    request.state.user = user
    await audit.record("auth.login", "user", user.id, after={"session": str(row.family_id)})
    await session.commit()
    LOGIN_ATTEMPTS.labels("success").inc()
    try:
        await throttle.reset(username, ip)
    except RedisError:
        log.warning("login_throttle_unavailable", exc_info=True)
    return _token_response(pair, rfc6749=is_form)


@router.post("/refresh", response_model=TokenPair, responses=_ERRORS)
async def refresh_tokens(
    body: RefreshRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    audit: AuditDep,
) -> JSONResponse:
    """Trade a refresh token for a new pair; the old refresh token is spent."""
    now = datetime.now(UTC)
    token = await tokens_repo.find_for_update(session, body.refresh_token)
    if token is None:
        raise Unauthorized("invalid refresh token")
    if token.revoked_at is not None:
        raise Unauthorized("refresh token revoked")
    if token.used_at is not None:
        # Used twice: the token leaked. Revoke every token descended from that login.
        revoked = await tokens_repo.revoke_family(session, token.family_id, now=now)
        await audit.record(
            "auth.refresh_reused",
            "user",
            token.user_id,
            after={"session": str(token.family_id), "revoked": revoked},
            actor=audit.actor(user_id=token.user_id),
        )
        await session.commit()
        log.warning("refresh_token_reused", user_id=token.user_id, session=str(token.family_id))
        raise Unauthorized("refresh token already used; that session has been revoked")
    if token.expires_at <= now:
        raise Unauthorized("refresh token expired")
    user = await users_repo.get(session, token.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("user is disabled or no longer exists")

    pair, new_row = await _issue_tokens(request, session, settings, user, now, token.family_id)
    await tokens_repo.mark_used(session, token, replaced_by=new_row.id, now=now)
    request.state.user = user
    await audit.record("auth.refresh", "user", user.id, after={"session": str(token.family_id)})
    await session.commit()
    return _token_response(pair, rfc6749=False)


@router.post("/logout", status_code=204, response_class=Response, responses=_ERRORS)
async def logout(
    body: LogoutRequest, user: CurrentUser, session: SessionDep, audit: AuditDep
) -> Response:
    """End the session of a refresh token, or every session of the current user."""
    now = datetime.now(UTC)
    if body.all:
        revoked = await tokens_repo.revoke_all_for_user(session, user.id, now=now)
    elif body.refresh_token:
        token = await tokens_repo.find(session, body.refresh_token)
        # Someone else's token is ignored, not revoked, and not reported either.
        if token is not None and token.user_id == user.id:
            revoked = await tokens_repo.revoke_family(session, token.family_id, now=now)
        else:
            revoked = 0
    else:
        raise InvalidInput("give refreshToken, or all: true")
    await audit.record("auth.logout", "user", user.id, after={"all": body.all, "revoked": revoked})
    await session.commit()
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, responses=_ERRORS)
async def read_me(user: CurrentUser) -> MeOut:
    """The current user and what their role allows."""
    return MeOut(
        **UserOut.model_validate(user).model_dump(), permissions=permissions_for(user.role)
    )
