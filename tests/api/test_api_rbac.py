"""Roles and permissions: a 401 and a 403 at every role boundary, and every route guarded."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from api_helpers import assert_error, login
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from api.deps import RequirePermission, RequireRole, get_auditor, get_current_user
from api.routes import load_routers
from core.permissions import (
    ALL_PERMISSIONS,
    PERMISSIONS,
    ROLE_ORDER,
    Role,
    has_permission,
    permission_table_markdown,
    role_at_least,
)

# Routes that authenticate by other means (the credentials or refresh token in the body).
PUBLIC_API_ROUTES = {("POST", "/api/auth/login"), ("POST", "/api/auth/refresh")}
# Carrier webhooks (routers tagged "carrier: ...") authenticate with the webhook token or the
# carrier's signature, and are carrier events rather than user actions: not bearer, not audited.
CARRIER_TAG_PREFIX = "carrier"


def _is_carrier_webhook(tags: list[str] | list[object]) -> bool:
    return any(str(tag).startswith(CARRIER_TAG_PREFIX) for tag in tags)


MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def extra_routes() -> Callable[[FastAPI], None]:
    def add(app: FastAPI) -> None:
        probe = APIRouter(prefix="/api/probe")

        @probe.get("/manager-role")
        async def probe_manager_role(user: RequireRole("manager")) -> str:
            return user.username

        @probe.get("/admin-role")
        async def probe_admin_role(user: RequireRole("admin")) -> str:
            return user.username

        @probe.get("/analytics")
        async def probe_analytics(user: RequirePermission("analytics:view")) -> str:
            return user.username

        app.include_router(probe)

    return add


@pytest.fixture(scope="module")
async def admin_role_headers(client: httpx.AsyncClient, auth) -> dict[str, str]:
    """A user with the plain `admin` role (the seed has none)."""
    created = await client.post(
        "/api/users",
        json={"username": "plain-admin", "password": "plain-admin-pw", "role": "admin"},
        headers=auth("admin"),
    )
    assert created.status_code == 201, created.text
    return (await login(client, "plain-admin", "plain-admin-pw")).headers


async def test_agent_to_manager_boundary(client: httpx.AsyncClient, auth) -> None:
    for path in ("/api/probe/manager-role", "/api/probe/analytics"):
        assert_error(await client.get(path), 401, "unauthorized")
        body = assert_error(await client.get(path, headers=auth("agent")), 403, "forbidden")
        assert "manager" in body["detail"] or "analytics:view" in body["detail"]
        ok = await client.get(path, headers=auth("manager"))
        assert ok.status_code == 200 and ok.json() == "manager"


async def test_manager_to_admin_boundary(
    client: httpx.AsyncClient, auth, admin_role_headers
) -> None:
    for path in ("/api/audit-logs", "/api/probe/admin-role"):
        assert_error(await client.get(path), 401, "unauthorized")
        assert_error(await client.get(path, headers=auth("manager")), 403, "forbidden")
        assert (await client.get(path, headers=admin_role_headers)).status_code == 200


async def test_admin_to_super_admin_boundary(
    client: httpx.AsyncClient, auth, admin_role_headers
) -> None:
    assert_error(await client.get("/api/users"), 401, "unauthorized")
    assert_error(await client.get("/api/users", headers=admin_role_headers), 403, "forbidden")
    create = await client.post(
        "/api/users",
        json={"username": "sneaky", "password": "sneaky-pass", "role": "super_admin"},
        headers=admin_role_headers,
    )
    assert_error(create, 403, "forbidden")
    assert (await client.get("/api/users", headers=auth("admin"))).status_code == 200


async def test_demotion_takes_effect_on_the_next_request(client: httpx.AsyncClient, auth) -> None:
    """A role change ends the user's sessions (tokens of earlier seconds: 401), and a new
    session has the new role's rights only (403)."""
    created = await client.post(
        "/api/users",
        json={"username": "soon-demoted", "password": "soon-demoted-pw", "role": "manager"},
        headers=auth("admin"),
    )
    user_id = created.json()["id"]
    session = await login(client, "soon-demoted", "soon-demoted-pw")
    assert (await client.get("/api/probe/analytics", headers=session.headers)).status_code == 200
    # Token times are whole seconds: demote in a later second than the login, so the old
    # token falls before the cut-off whatever the machine's speed.
    await asyncio.sleep(1.05 - time.time() % 1)
    demote = await client.patch(
        f"/api/users/{user_id}", json={"role": "agent"}, headers=auth("admin")
    )
    assert demote.status_code == 200
    ended = assert_error(await client.get("/api/probe/analytics", headers=session.headers), 401)
    assert "session has ended" in ended["detail"]
    again = await login(client, "soon-demoted", "soon-demoted-pw")
    assert_error(await client.get("/api/probe/analytics", headers=again.headers), 403)


def _dependency_calls(route: APIRoute) -> Iterator[object]:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        yield dep.call
        stack.extend(dep.dependencies)


def test_every_api_route_is_authenticated_and_every_mutation_audited() -> None:
    checked = 0
    for router in load_routers():  # every router the app mounts, later areas' included
        for route in router.routes:
            if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
                continue
            if _is_carrier_webhook(route.tags):
                continue
            calls = set(_dependency_calls(route))
            for method in route.methods:
                checked += 1
                if (method, route.path) not in PUBLIC_API_ROUTES:
                    assert get_current_user in calls, f"{method} {route.path} is not authenticated"
                if method in MUTATING:
                    assert get_auditor in calls, f"{method} {route.path} writes no audit row"
    assert checked >= 10


def test_openapi_marks_every_protected_operation_with_the_oauth2_scheme(app: FastAPI) -> None:
    spec = app.openapi()
    flow = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
    assert flow["tokenUrl"] == "/api/auth/login"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not path.startswith("/api/") or path.startswith("/api/probe/"):
                continue
            if _is_carrier_webhook(operation.get("tags", [])):
                continue
            secured = bool(operation.get("security"))
            assert secured == ((method.upper(), path) not in PUBLIC_API_ROUTES), (method, path)
    login_body = spec["paths"]["/api/auth/login"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(login_body)


def test_roles_are_ordered_and_each_holds_the_lower_roles_permissions() -> None:
    assert [r.value for r in ROLE_ORDER] == ["agent", "manager", "admin", "super_admin"]
    for lower, higher in itertools.pairwise(ROLE_ORDER):
        assert PERMISSIONS[lower] < PERMISSIONS[higher]
        assert role_at_least(higher, lower) and not role_at_least(lower, higher)
    assert PERMISSIONS[Role.super_admin] == ALL_PERMISSIONS
    assert has_permission("super_admin", "users:manage")
    assert not has_permission("admin", "users:manage")
    assert has_permission("manager", "flows:edit") and not has_permission(
        "manager", "flows:publish"
    )
    assert has_permission("agent", "agents:status:own")
    assert not has_permission("agent", "agents:status:any")
    assert not has_permission("unknown-role", "calls:view")


def test_unknown_permission_fails_at_definition() -> None:
    with pytest.raises(ValueError, match="unknown permission"):
        RequirePermission("flows:edti")
    with pytest.raises(ValueError):
        RequireRole("owner")


def test_permission_table_markdown_lists_every_permission_and_role() -> None:
    table = permission_table_markdown()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| permission |")
    for role in Role:
        assert f"`{role.value}`" in lines[0]
    rows = {line.split("|")[1].strip().strip("`"): line for line in lines[2:]}
    assert set(rows) == ALL_PERMISSIONS
    # users:manage: only the super_admin column (the first role column) is ticked.
    cells = [c.strip() for c in rows["users:manage"].strip("|").split("|")]
    assert cells[2:] == ["✓", "", "", ""]
    assert [c.strip() for c in rows["calls:view"].strip("|").split("|")][2:] == ["✓"] * 4
