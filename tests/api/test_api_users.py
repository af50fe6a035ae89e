"""User administration and the audit trail it leaves."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from api_helpers import assert_error, login
from sqlalchemy import select

from core.db.models import AuditLog, User
from core.repositories import audit as audit_repo


async def _audit_rows(db, **filters) -> list[AuditLog]:
    async with db() as s:
        stmt = select(AuditLog).order_by(AuditLog.id)
        for name, value in filters.items():
            stmt = stmt.where(getattr(AuditLog, name) == value)
        return list((await s.execute(stmt)).scalars().all())


async def test_create_get_list_update_disable(client: httpx.AsyncClient, auth, db) -> None:
    created = await client.post(
        "/api/users",
        json={
            "username": "Priya.S",
            "password": "priya-password",
            "role": "manager",
            "email": "priya@example.in",
            "fullName": "Priya S",
        },
        headers=auth("admin"),
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["username"] == "Priya.S" and user["fullName"] == "Priya S"
    assert user["isActive"] is True and "password" not in user and "passwordHash" not in user
    user_id = user["id"]

    got = await client.get(f"/api/users/{user_id}", headers=auth("admin"))
    assert got.status_code == 200 and got.json()["email"] == "priya@example.in"

    page = await client.get(
        "/api/users", params={"role": "manager", "limit": 1}, headers=auth("admin")
    )
    body = page.json()
    assert page.status_code == 200 and body["limit"] == 1 and len(body["items"]) == 1
    assert body["total"] >= 2  # the seeded manager and Priya
    found = await client.get("/api/users", params={"q": "priya"}, headers=auth("admin"))
    assert [u["id"] for u in found.json()["items"]] == [user_id]

    patched = await client.patch(
        f"/api/users/{user_id}", json={"fullName": "Priya Sharma"}, headers=auth("admin")
    )
    assert patched.status_code == 200 and patched.json()["fullName"] == "Priya Sharma"
    assert patched.json()["role"] == "manager"

    session = await login(client, "priya.s", "priya-password")
    deleted = await client.delete(f"/api/users/{user_id}", headers=auth("admin"))
    assert deleted.status_code == 204
    # Disabled, not gone; its tokens stop working at once, and it cannot log in.
    assert (await client.get(f"/api/users/{user_id}", headers=auth("admin"))).json()[
        "isActive"
    ] is False
    assert_error(await client.get("/api/auth/me", headers=session.headers), 401)
    assert_error(
        await client.post("/api/auth/refresh", json={"refreshToken": session.refresh_token}), 401
    )
    assert_error(
        await client.post(
            "/api/auth/login", json={"username": "priya.s", "password": "priya-password"}
        ),
        401,
    )

    rows = await _audit_rows(db, entity_type="user", entity_id=str(user_id))
    actions = [r.action for r in rows]
    assert actions[:3] == ["user.create", "user.update", "auth.login"]
    assert "user.disable" in actions
    create = rows[0]
    admin_id = (await client.get("/api/auth/me", headers=auth("admin"))).json()["id"]
    assert create.actor_user_id == admin_id and create.actor_username == "admin"
    assert create.after["username"] == "Priya.S" and create.before is None
    assert create.request_id and str(create.ip) == "127.0.0.1"
    update = rows[1]
    assert update.before == {"full_name": "Priya S"}
    assert update.after == {"full_name": "Priya Sharma"}
    disable = next(r for r in rows if r.action == "user.disable")
    assert disable.before == {"is_active": True} and disable.after["is_active"] is False
    assert disable.after["sessions_revoked"] >= 1
    for row in rows:
        dumped = f"{row.before} {row.after}"
        assert "argon2" not in dumped and "priya-password" not in dumped


async def test_request_id_of_the_call_is_on_its_audit_row(
    client: httpx.AsyncClient, auth, db
) -> None:
    response = await client.post(
        "/api/users",
        json={"username": "traced", "password": "traced-password", "role": "agent"},
        headers={**auth("admin"), "X-Request-ID": "trace-me-123"},
    )
    assert response.headers["x-request-id"] == "trace-me-123"
    [row] = await _audit_rows(db, request_id="trace-me-123")
    assert row.action == "user.create" and row.entity_id == str(response.json()["id"])


async def test_duplicate_username_is_409_in_any_case(client: httpx.AsyncClient, auth) -> None:
    for username in ("agent", "AGENT", "Agent"):
        response = await client.post(
            "/api/users",
            json={"username": username, "password": "whatever-pw", "role": "agent"},
            headers=auth("admin"),
        )
        assert_error(response, 409, "conflict")
    made = await client.post(
        "/api/users",
        json={"username": "renamable", "password": "whatever-pw", "role": "agent"},
        headers=auth("admin"),
    )
    rename = await client.patch(
        f"/api/users/{made.json()['id']}", json={"username": "MANAGER"}, headers=auth("admin")
    )
    assert_error(rename, 409, "conflict")


async def test_validation_names_the_field(client: httpx.AsyncClient, auth) -> None:
    cases = [
        ({"username": "ab", "password": "long-enough", "role": "agent"}, "body.username"),
        ({"username": "x" * 65, "password": "long-enough", "role": "agent"}, "body.username"),
        ({"username": "has space", "password": "long-enough", "role": "agent"}, "body.username"),
        ({"username": "okname", "password": "short", "role": "agent"}, "body.password"),
        ({"username": "okname", "password": "p" * 257, "role": "agent"}, "body.password"),
        ({"username": "okname", "password": "long-enough", "role": "owner"}, "body.role"),
        ({"username": "okname", "password": "long-enough"}, "body.role"),
        (
            {"username": "okname", "password": "long-enough", "role": "agent", "email": "nope"},
            "body.email",
        ),
        (
            {
                "username": "okname",
                "password": "long-enough",
                "role": "agent",
                "fullName": "n" * 129,
            },
            "body.fullName",
        ),
        (
            {"username": "okname", "password": "long-enough", "role": "agent", "isAdmin": True},
            "body.isAdmin",
        ),
    ]
    for payload, field in cases:
        response = await client.post("/api/users", json=payload, headers=auth("admin"))
        body = assert_error(response, 422, "invalid_input")
        assert field in body["detail"], (payload, body)
        assert "long-enough" not in body["detail"]  # values are never echoed
    assert_error(
        await client.patch("/api/users/1", json={"role": None}, headers=auth("admin")), 422
    )
    assert_error(await client.get("/api/users/999999", headers=auth("admin")), 404, "not_found")
    assert_error(await client.get("/api/users/abc", headers=auth("admin")), 422)
    assert_error(await client.get("/api/users?limit=1000", headers=auth("admin")), 422)


async def test_cannot_disable_or_demote_yourself(client: httpx.AsyncClient, auth) -> None:
    me = (await client.get("/api/auth/me", headers=auth("admin"))).json()
    assert_error(await client.delete(f"/api/users/{me['id']}", headers=auth("admin")), 403)
    assert_error(
        await client.patch(f"/api/users/{me['id']}", json={"role": "admin"}, headers=auth("admin")),
        403,
    )
    assert_error(
        await client.patch(
            f"/api/users/{me['id']}", json={"isActive": False}, headers=auth("admin")
        ),
        403,
    )
    # Editing one's own other fields is fine, and a no-op role "change" too.
    ok = await client.patch(
        f"/api/users/{me['id']}",
        json={"fullName": "Root", "role": "super_admin"},
        headers=auth("admin"),
    )
    assert ok.status_code == 200 and ok.json()["role"] == "super_admin"


async def test_role_change_and_password_reset_end_sessions(
    client: httpx.AsyncClient, auth, db
) -> None:
    made = await client.post(
        "/api/users",
        json={"username": "rotating", "password": "first-password", "role": "agent"},
        headers=auth("admin"),
    )
    user_id = made.json()["id"]

    before_role = await login(client, "rotating", "first-password")
    promote = await client.patch(
        f"/api/users/{user_id}", json={"role": "manager"}, headers=auth("admin")
    )
    assert promote.status_code == 200 and promote.json()["role"] == "manager"
    assert_error(
        await client.post("/api/auth/refresh", json={"refreshToken": before_role.refresh_token}),
        401,
    )

    before_reset = await login(client, "rotating", "first-password")
    reset = await client.patch(
        f"/api/users/{user_id}", json={"password": "second-password"}, headers=auth("admin")
    )
    assert reset.status_code == 200
    assert_error(
        await client.post("/api/auth/refresh", json={"refreshToken": before_reset.refresh_token}),
        401,
    )
    assert_error(
        await client.post(
            "/api/auth/login", json={"username": "rotating", "password": "first-password"}
        ),
        401,
    )
    await login(client, "rotating", "second-password")

    rows = await _audit_rows(db, entity_id=str(user_id), action="user.update")
    assert rows[0].before == {"role": "agent"} and rows[0].after["role"] == "manager"
    assert rows[0].after["sessions_revoked"] == 1
    assert rows[1].after == {"password_reset": True, "sessions_revoked": 1}
    async with db() as s:
        stored = (await s.execute(select(User).where(User.id == user_id))).scalar_one()
    assert stored.password_hash.startswith("$argon2id$")


async def test_login_success_and_failure_are_audited(client: httpx.AsyncClient, db) -> None:
    await client.post("/api/auth/login", json={"username": "agent", "password": "wrong-one"})
    await client.post("/api/auth/login", json={"username": "ghost", "password": "wrong-one"})
    await login(client, "agent", "agent123")
    failed = await _audit_rows(db, action="auth.login_failed")
    reasons = {(r.actor_username, r.after["reason"]) for r in failed}
    assert ("agent", "bad_password") in reasons and ("ghost", "unknown_user") in reasons
    assert all("wrong-one" not in str(r.after) for r in failed)
    ok = (await _audit_rows(db, action="auth.login", actor_username="agent"))[-1]
    assert ok.actor_user_id is not None and ok.entity_id == str(ok.actor_user_id)


async def test_audit_log_endpoint_pages_and_filters(client: httpx.AsyncClient, auth) -> None:
    made = await client.post(
        "/api/users",
        json={"username": "audited", "password": "audited-password", "role": "agent"},
        headers=auth("admin"),
    )
    user_id = made.json()["id"]
    await client.patch(f"/api/users/{user_id}", json={"fullName": "A"}, headers=auth("admin"))

    by_entity = await client.get(
        "/api/audit-logs",
        params={"entityType": "user", "entityId": str(user_id)},
        headers=auth("admin"),
    )
    assert by_entity.status_code == 200, by_entity.text
    body = by_entity.json()
    assert body["total"] == 2
    assert [item["action"] for item in body["items"]] == ["user.update", "user.create"]
    item = body["items"][1]
    assert {"occurredAt", "actorUserId", "actorUsername", "entityType", "requestId"} <= set(item)
    assert item["ip"] == "127.0.0.1"

    by_actor = await client.get(
        "/api/audit-logs", params={"actor": "admin", "limit": 2}, headers=auth("admin")
    )
    assert by_actor.json()["limit"] == 2 and len(by_actor.json()["items"]) == 2
    assert all(i["actorUsername"] == "admin" for i in by_actor.json()["items"])
    by_action = await client.get(
        "/api/audit-logs", params={"action": "user.create"}, headers=auth("admin")
    )
    assert {i["action"] for i in by_action.json()["items"]} == {"user.create"}


def test_audit_summaries_are_scrubbed_of_secrets_at_any_depth() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    scrubbed = audit_repo.scrub(
        {
            "username": "u",
            "password": "p",
            "password_hash": "$argon2id$...",
            "webhook_token": "t",
            "settings": {"exotel_api_key": "k", "node_key": "welcome", "api_token": "t2"},
            "steps": [{"refresh_token": "r", "at": when}],
            "when": when,
        }
    )
    assert scrubbed == {
        "username": "u",
        "settings": {"node_key": "welcome"},
        "steps": [{"at": "2026-01-02T03:04:05Z"}],
        "when": "2026-01-02T03:04:05Z",
    }
    assert audit_repo.scrub(None) is None
    assert audit_repo.changes({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ({"b": 2}, {"b": 3})


async def test_access_tokens_issued_before_a_password_reset_stop_working(
    client: httpx.AsyncClient, auth
) -> None:
    """The refresh token is revoked at once; so is an access token already handed out (it
    would otherwise live until it expires), while one issued after the reset works."""
    import asyncio

    made = await client.post(
        "/api/users",
        json={"username": "leaked", "password": "first-password", "role": "manager"},
        headers=auth("admin"),
    )
    user_id = made.json()["id"]
    stolen = await login(client, "leaked", "first-password")
    assert (await client.get("/api/auth/me", headers=stolen.headers)).status_code == 200
    await asyncio.sleep(1.1)  # tokens carry whole seconds: the reset must fall in a later one
    reset = await client.patch(
        f"/api/users/{user_id}", json={"password": "second-password"}, headers=auth("admin")
    )
    assert reset.status_code == 200
    refused = await client.get("/api/auth/me", headers=stolen.headers)
    assert_error(refused, 401)
    assert "session has ended" in refused.json()["detail"]
    fresh = await login(client, "leaked", "second-password")
    assert (await client.get("/api/auth/me", headers=fresh.headers)).status_code == 200
