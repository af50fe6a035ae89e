"""Wire models: camelCase JSON outside, snake_case Python inside.

`CamelModel` is the base of every request and response body. Input models also forbid unknown
fields (`InputModel`), so a misspelt field is a 422 naming it instead of a silent no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from core.permissions import Role


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class InputModel(CamelModel):
    model_config = ConfigDict(extra="forbid")


T = TypeVar("T")


class Page(CamelModel, Generic[T]):
    """One page of a list; `total` counts every match, not just this page."""

    items: list[T]
    total: int
    offset: int
    limit: int


class ErrorOut(CamelModel):
    """Every error response: a stable code and a human message."""

    error: str
    detail: str


# --- auth ------------------------------------------------------------------------------------

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
USERNAME_MIN, USERNAME_MAX = 3, 64
PASSWORD_MIN, PASSWORD_MAX = 8, 256
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class LoginRequest(InputModel):
    # Login accepts any non-empty string: rejecting a bad shape here would tell an attacker
    # which usernames can exist. Limits only stop absurd payloads.
    username: str = Field(min_length=1, max_length=USERNAME_MAX)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class TokenPair(CamelModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="seconds until the access token expires")


class RefreshRequest(InputModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(InputModel):
    refresh_token: str | None = Field(default=None, min_length=1, max_length=512)
    all: bool = Field(default=False, description="revoke every session of the current user")


# --- users -----------------------------------------------------------------------------------


class UserOut(CamelModel):
    id: int
    username: str
    email: str | None
    full_name: str | None
    role: Role
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MeOut(UserOut):
    permissions: list[str]


class UserCreate(InputModel):
    username: str = Field(
        min_length=USERNAME_MIN, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN
    )
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    role: Role
    email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)
    full_name: str | None = Field(default=None, min_length=1, max_length=128)
    is_active: bool = True


class UserUpdate(InputModel):
    """Only the fields present change; `password` set means a reset."""

    username: str | None = Field(
        default=None, min_length=USERNAME_MIN, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN
    )
    password: str | None = Field(default=None, min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    role: Role | None = None
    email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)
    full_name: str | None = Field(default=None, min_length=1, max_length=128)
    is_active: bool | None = None


# --- audit -----------------------------------------------------------------------------------


class AuditLogOut(CamelModel):
    id: int
    occurred_at: datetime
    actor_user_id: int | None
    actor_username: str | None
    action: str
    entity_type: str
    entity_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip: str | None
    request_id: str | None

    @field_validator("ip", mode="before")
    @classmethod
    def _ip_as_text(cls, value: object) -> object:
        # asyncpg returns INET columns as ipaddress objects.
        return None if value is None else str(value)


# --- health ----------------------------------------------------------------------------------


class ComponentHealth(CamelModel):
    status: Literal["up", "down"]
    latency_ms: float | None = None
    detail: str | None = None


class HealthOut(CamelModel):
    status: Literal["ok", "degraded"]
    components: dict[str, ComponentHealth]
