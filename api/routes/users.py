"""User administration (super_admin) and the audit log (admin and up)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import AuditDep, PagingDep, RequirePermission, SessionDep
from core.db.models import User
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.permissions import Role
from core.repositories import audit as audit_repo
from core.repositories import tokens as tokens_repo
from core.repositories import users as users_repo
from core.schemas import AuditLogOut, ErrorOut, Page, UserCreate, UserOut, UserUpdate
from core.security import hash_password_async

router = APIRouter(prefix="/api/users", tags=["users"])
audit_router = APIRouter(prefix="/api/audit-logs", tags=["audit"])

UserAdmin = RequirePermission("users:manage")
AuditReader = RequirePermission("audit:view")

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
}
_ONE_USER_ERRORS: dict[int | str, dict[str, Any]] = {**_ERRORS, 404: {"model": ErrorOut}}
# Nullable columns may be cleared with an explicit null; these may not.
_NOT_NULLABLE = ("username", "password", "role", "is_active")


async def _get_user(session: SessionDep, user_id: int) -> User:
    user = await users_repo.get(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


@router.get("", response_model=Page[UserOut], responses=_ERRORS)
async def list_users(
    _: UserAdmin,
    session: SessionDep,
    paging: PagingDep,
    role: Role | None = None,
    active: bool | None = None,
    q: Annotated[str | None, Query(max_length=64, description="username, name or email")] = None,
) -> Page[UserOut]:
    """List users, optionally by role, state or a search string."""
    rows, total = await users_repo.list_users(
        session, offset=paging.offset, limit=paging.limit, role=role, is_active=active, search=q
    )
    return Page[UserOut](
        items=[UserOut.model_validate(u) for u in rows],
        total=total,
        offset=paging.offset,
        limit=paging.limit,
    )


@router.post(
    "", status_code=201, response_model=UserOut, responses={**_ERRORS, 409: {"model": ErrorOut}}
)
async def create_user(
    body: UserCreate, _: UserAdmin, session: SessionDep, audit: AuditDep
) -> UserOut:
    """Create a user (usernames are unique regardless of letter case)."""
    user = await users_repo.create(
        session,
        username=body.username,
        password_hash=await hash_password_async(body.password),
        role=body.role.value,
        email=body.email,
        full_name=body.full_name,
        is_active=body.is_active,
    )
    await audit.record("user.create", "user", user.id, after=users_repo.summary(user))
    await session.commit()
    return UserOut.model_validate(user)


@router.get("/{user_id}", response_model=UserOut, responses=_ONE_USER_ERRORS)
async def get_user(user_id: int, _: UserAdmin, session: SessionDep) -> UserOut:
    """One user."""
    return UserOut.model_validate(await _get_user(session, user_id))


@router.patch(
    "/{user_id}",
    response_model=UserOut,
    responses={**_ONE_USER_ERRORS, 409: {"model": ErrorOut}},
)
async def update_user(
    user_id: int, body: UserUpdate, actor: UserAdmin, session: SessionDep, audit: AuditDep
) -> UserOut:
    """Change a user; a new role, a password reset or disabling ends their sessions."""
    changes = body.model_dump(exclude_unset=True)
    for name in _NOT_NULLABLE:
        if name in changes and changes[name] is None:
            raise InvalidInput(f"{name} cannot be null")
    user = await _get_user(session, user_id)
    if user.id == actor.id:
        if "role" in changes and changes["role"] != user.role:
            raise Forbidden("you cannot change your own role")
        if changes.get("is_active") is False:
            raise Forbidden("you cannot disable yourself")

    before = users_repo.summary(user)
    new_username = changes.get("username")
    if new_username is not None and new_username.lower() != user.username.lower():
        if await users_repo.username_taken(session, new_username, exclude_id=user.id):
            raise Conflict(f"username {new_username!r} is taken")
    for name in ("username", "email", "full_name", "is_active"):
        if name in changes:
            setattr(user, name, changes[name])
    if "role" in changes:
        user.role = Role(changes["role"]).value
    password_reset = "password" in changes
    if password_reset:
        user.password_hash = await hash_password_async(changes["password"])

    end_sessions = (
        password_reset
        or before["role"] != user.role
        or (before["is_active"] and not user.is_active)
    )
    revoked = 0
    if end_sessions:
        now = datetime.now(UTC)
        revoked = await tokens_repo.revoke_all_for_user(session, user.id, now=now)
        user.sessions_valid_after = now  # access tokens already out stop working too
    await users_repo.flush_or_conflict(session, f"username {user.username!r} is taken")

    old, new = audit_repo.changes(before, users_repo.summary(user))
    if password_reset:
        new["password_reset"] = True
    if end_sessions:
        new["sessions_revoked"] = revoked
    await audit.record("user.update", "user", user.id, before=old, after=new)
    await session.commit()
    await session.refresh(user)
    return UserOut.model_validate(user)


@router.delete("/{user_id}", status_code=204, response_class=Response, responses=_ONE_USER_ERRORS)
async def disable_user(
    user_id: int, actor: UserAdmin, session: SessionDep, audit: AuditDep
) -> Response:
    """Disable a user and end their sessions (history keeps pointing at them)."""
    user = await _get_user(session, user_id)
    if user.id == actor.id:
        raise Forbidden("you cannot disable yourself")
    before = users_repo.summary(user)
    user.is_active = False
    revoked = await tokens_repo.revoke_all_for_user(session, user.id, now=datetime.now(UTC))
    await session.flush()
    await audit.record(
        "user.disable",
        "user",
        user.id,
        before={"is_active": before["is_active"]},
        after={"is_active": False, "sessions_revoked": revoked},
    )
    await session.commit()
    return Response(status_code=204)


@audit_router.get("", response_model=Page[AuditLogOut], responses=_ERRORS)
async def list_audit_logs(
    _: AuditReader,
    session: SessionDep,
    paging: PagingDep,
    entity_type: Annotated[str | None, Query(alias="entityType", max_length=64)] = None,
    entity_id: Annotated[str | None, Query(alias="entityId", max_length=128)] = None,
    actor_id: Annotated[int | None, Query(alias="actorId")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="actor username")] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditLogOut]:
    """The audit log, newest first, filtered by entity, actor or action."""
    rows, total = await audit_repo.list_logs(
        session,
        offset=paging.offset,
        limit=paging.limit,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_user_id=actor_id,
        actor_username=actor,
        action=action,
    )
    return Page[AuditLogOut](
        items=[AuditLogOut.model_validate(r) for r in rows],
        total=total,
        offset=paging.offset,
        limit=paging.limit,
    )
