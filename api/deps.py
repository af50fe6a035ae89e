"""FastAPI dependencies as `Annotated` aliases: what a route needs is in its signature.

    async def publish_flow(flow_id: int, user: RequirePermission("flows:publish"),
                           session: SessionDep, audit: AuditDep) -> FlowOut: ...

`CurrentUser` (and everything built on it) answers 401 with `WWW-Authenticate: Bearer` for a
missing or bad token, and `RequirePermission` / `RequireRole` answer 403 for a role too low.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.db.models import User
from core.errors import Forbidden, Unauthorized
from core.permissions import ALL_PERMISSIONS, Role, has_permission, role_at_least
from core.repositories import audit as audit_repo
from core.repositories import users as users_repo
from core.security import decode_access_token

TOKEN_URL = "/api/auth/login"  # noqa: S105  (a path, not a secret)

# auto_error=False: we raise our own 401 so it has the `{"error","detail"}` shape.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL, auto_error=False, description="Log in with username and password."
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_redis(request: Request) -> Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; routes commit once at the end, anything else is rolled back."""
    async with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


def client_ip(request: Request) -> str | None:
    """The peer address as uvicorn reports it (behind a proxy, run uvicorn with --proxy-headers
    and --forwarded-allow-ips so this is the real client); None if it is not an IP."""
    host = request.client.host if request.client else None
    if not host:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    """The active user behind the bearer token."""
    if not token:
        raise Unauthorized("not authenticated")
    claims = decode_access_token(token, settings)
    user = await users_repo.get(session, claims.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("user is disabled or no longer exists")
    cutoff = user.sessions_valid_after
    # `iat` has whole seconds: a token from the second of the cut-off itself still passes.
    if cutoff is not None and claims.issued_at < cutoff.replace(microsecond=0):
        raise Unauthorized("this session has ended (password, role or status changed)")
    request.state.user = user
    structlog.contextvars.bind_contextvars(user_id=user.id)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_permission(permission: str) -> Callable[..., Awaitable[User]]:
    """The dependency function behind `RequirePermission` (for `dependencies=[Depends(...)]`)."""
    if permission not in ALL_PERMISSIONS:
        # Fail at import, not at request time, for a misspelt permission.
        raise ValueError(f"unknown permission {permission!r}")

    async def check_permission(user: CurrentUser) -> User:
        if not has_permission(user.role, permission):
            raise Forbidden(f"requires permission {permission}")
        return user

    check_permission.__name__ = f"require_{permission.replace(':', '_')}"
    return check_permission


def require_role(minimum: str | Role) -> Callable[..., Awaitable[User]]:
    """The dependency function behind `RequireRole` (minimum role, by rank)."""
    min_role = Role(minimum)

    async def check_role(user: CurrentUser) -> User:
        if not role_at_least(user.role, min_role):
            raise Forbidden(f"requires role {min_role.value} or higher")
        return user

    check_role.__name__ = f"require_role_{min_role.value}"
    return check_role


def RequirePermission(permission: str) -> Any:
    """`user: RequirePermission("flows:edit")`: the current user, if their role grants it."""
    return Annotated[User, Depends(require_permission(permission))]


def RequireRole(minimum: str | Role) -> Any:
    """`user: RequireRole("admin")`: the current user, if their role is at least `minimum`."""
    return Annotated[User, Depends(require_role(minimum))]


class Auditor:
    """Writes audit rows for this request into its session (so they commit with the change)."""

    def __init__(self, request: Request, session: AsyncSession) -> None:
        self._request = request
        self._session = session

    def actor(self, *, username: str | None = None, user_id: int | None = None) -> audit_repo.Actor:
        user: User | None = getattr(self._request.state, "user", None)
        return audit_repo.Actor(
            user_id=user.id if user is not None else user_id,
            username=user.username if user is not None else username,
            ip=client_ip(self._request),
            request_id=request_id(self._request),
        )

    async def record(
        self,
        action: str,
        entity_type: str,
        entity_id: str | int | None = None,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        actor: audit_repo.Actor | None = None,
    ) -> None:
        await audit_repo.record(
            self._session,
            actor or self.actor(),
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before,
            after=after,
        )


def get_auditor(request: Request, session: SessionDep) -> Auditor:
    return Auditor(request, session)


AuditDep = Annotated[Auditor, Depends(get_auditor)]


MAX_PAGE_LIMIT = 200


class Paging:
    """`?offset=&limit=` with a hard cap, so no list endpoint can be asked for everything."""

    def __init__(
        self,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = 50,
    ) -> None:
        self.offset = offset
        self.limit = limit


PagingDep = Annotated[Paging, Depends()]
