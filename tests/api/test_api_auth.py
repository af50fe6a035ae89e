"""Login, tokens, refresh rotation with reuse detection, logout, /me."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from api_helpers import assert_error, login
from sqlalchemy import select

from api.routes import auth as auth_routes
from core.config import Settings
from core.db.models import RefreshToken
from core.security import create_access_token, dummy_password_hash, hash_refresh_token


async def test_login_with_json_returns_camelcase_token_pair(
    client: httpx.AsyncClient, api_settings: Settings
) -> None:
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": "admin123"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"accessToken", "refreshToken", "tokenType", "expiresIn"}
    assert body["tokenType"] == "bearer"
    assert body["expiresIn"] == api_settings.access_token_ttl_s
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(
        body["accessToken"],
        api_settings.jwt_secret.get_secret_value(),
        algorithms=[api_settings.jwt_algorithm],
    )
    assert claims["type"] == "access" and claims["role"] == "super_admin"
    assert {"sub", "iat", "exp", "jti"} <= set(claims)


async def test_login_with_oauth2_form_works_for_the_docs_authorize_button(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/login",
        data={"grant_type": "password", "username": "manager", "password": "manager123"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # Swagger UI reads the RFC 6749 names; our clients read camelCase. Both are there.
    assert body["access_token"] == body["accessToken"]
    assert body["token_type"] == "bearer"
    me = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200 and me.json()["username"] == "manager"


async def test_username_is_case_insensitive(client: httpx.AsyncClient) -> None:
    session = await login(client, "AdMiN", "admin123")
    me = await client.get("/api/auth/me", headers=session.headers)
    assert me.json()["username"] == "admin"


async def test_wrong_password_and_unknown_user_get_the_same_401(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real_verify = auth_routes.verify_password_async

    async def spy(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return await real_verify(password_hash, password)

    monkeypatch.setattr(auth_routes, "verify_password_async", spy)
    wrong = await client.post(
        "/api/auth/login", json={"username": "agent", "password": "nope-nope"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"username": "nobody-here", "password": "nope-nope"}
    )
    assert assert_error(wrong, 401, "unauthorized") == assert_error(unknown, 401, "unauthorized")
    assert wrong.headers["www-authenticate"] == "Bearer"
    # Both paid for one argon2 verification (the unknown name against a dummy hash), so the
    # answer time does not tell which usernames exist.
    assert len(verified) == 2
    assert verified[1] == dummy_password_hash() and verified[0] != verified[1]


async def test_me_returns_user_and_permissions(client: httpx.AsyncClient, auth) -> None:
    response = await client.get("/api/auth/me", headers=auth("agent"))
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "agent" and body["role"] == "agent"
    assert "passwordHash" not in body and "password_hash" not in body
    assert "isActive" in body and "lastLoginAt" in body
    assert "agents:status:own" in body["permissions"]
    assert "flows:edit" not in body["permissions"]


async def test_missing_token_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_malformed_tokens_are_401(client: httpx.AsyncClient) -> None:
    for header in ("Bearer not-a-jwt", "Bearer a.b.c", "Bearer", "Basic YWRtaW46YWRtaW4xMjM="):
        response = await client.get("/api/auth/me", headers={"Authorization": header})
        assert_error(response, 401, "unauthorized")


async def test_expired_token_is_401(client: httpx.AsyncClient, api_settings: Settings) -> None:
    token, _ = create_access_token(
        user_id=1,
        role="super_admin",
        settings=api_settings,
        now=datetime.now(UTC) - timedelta(seconds=api_settings.access_token_ttl_s + 60),
    )
    body = assert_error(
        await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}), 401
    )
    assert "expired" in body["detail"]


async def test_forged_token_signed_with_another_key_is_401(
    client: httpx.AsyncClient, api_settings: Settings
) -> None:
    now = datetime.now(UTC)
    claims = {
        "sub": "1",
        "role": "super_admin",
        "type": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": "x",
    }
    forged = jwt.encode(claims, "some-other-key-of-sufficient-length-123456", algorithm="HS256")
    assert_error(
        await client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"}), 401
    )
    # The "none" algorithm is refused too.
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_error(
        await client.get("/api/auth/me", headers={"Authorization": f"Bearer {unsigned}"}), 401
    )


async def test_wrong_type_token_is_401(client: httpx.AsyncClient, api_settings: Settings) -> None:
    # A refresh token is opaque: presented as a bearer token it is just garbage.
    session = await login(client, "agent", "agent123")
    assert_error(
        await client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {session.refresh_token}"}
        ),
        401,
    )
    # A validly signed JWT whose type is not "access" is refused by type.
    now = datetime.now(UTC)
    refresh_like = jwt.encode(
        {
            "sub": "1",
            "role": "super_admin",
            "type": "refresh",
            "iat": now,
            "exp": now + timedelta(minutes=5),
            "jti": "y",
        },
        api_settings.jwt_secret.get_secret_value(),
        algorithm=api_settings.jwt_algorithm,
    )
    body = assert_error(
        await client.get("/api/auth/me", headers={"Authorization": f"Bearer {refresh_like}"}), 401
    )
    assert "type" in body["detail"]


async def test_token_of_unknown_user_is_401(
    client: httpx.AsyncClient, api_settings: Settings
) -> None:
    token, _ = create_access_token(user_id=999_999, role="super_admin", settings=api_settings)
    assert_error(
        await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}), 401
    )


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient, db) -> None:
    first = await login(client, "manager", "manager123")

    rotated = await client.post("/api/auth/refresh", json={"refreshToken": first.refresh_token})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refreshToken"] != first.refresh_token
    me = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {second['accessToken']}"}
    )
    assert me.status_code == 200

    async with db() as s:
        old = (
            await s.execute(
                select(RefreshToken).where(
                    RefreshToken.token_hash == hash_refresh_token(first.refresh_token)
                )
            )
        ).scalar_one()
        new = (
            await s.execute(
                select(RefreshToken).where(
                    RefreshToken.token_hash == hash_refresh_token(second["refreshToken"])
                )
            )
        ).scalar_one()
    assert old.used_at is not None and old.replaced_by == new.id
    assert new.family_id == old.family_id and new.used_at is None
    # Only the hash is stored.
    assert first.refresh_token not in (old.token_hash, new.token_hash)

    # The old token presented again: reuse. 401, and the whole family dies with it...
    reuse = await client.post("/api/auth/refresh", json={"refreshToken": first.refresh_token})
    assert_error(reuse, 401, "unauthorized")
    # ...so the legitimate newer token is dead too.
    after = await client.post("/api/auth/refresh", json={"refreshToken": second["refreshToken"]})
    assert_error(after, 401, "unauthorized")

    async with db() as s:
        family = (
            (await s.execute(select(RefreshToken).where(RefreshToken.family_id == old.family_id)))
            .scalars()
            .all()
        )
    assert len(family) == 2 and all(t.revoked_at is not None for t in family)


async def test_reuse_revokes_only_that_family(client: httpx.AsyncClient) -> None:
    a = await login(client, "agent", "agent123")
    b = await login(client, "agent", "agent123")
    assert (
        await client.post("/api/auth/refresh", json={"refreshToken": a.refresh_token})
    ).status_code == 200
    assert_error(
        await client.post("/api/auth/refresh", json={"refreshToken": a.refresh_token}), 401
    )
    other = await client.post("/api/auth/refresh", json={"refreshToken": b.refresh_token})
    assert other.status_code == 200, other.text


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(
        await client.post("/api/auth/refresh", json={"refreshToken": "made-up-token"}), 401
    )


async def test_logout_revokes_that_session_only(client: httpx.AsyncClient) -> None:
    a = await login(client, "agent", "agent123")
    b = await login(client, "agent", "agent123")
    out = await client.post(
        "/api/auth/logout", json={"refreshToken": a.refresh_token}, headers=a.headers
    )
    assert out.status_code == 204, out.text
    assert_error(
        await client.post("/api/auth/refresh", json={"refreshToken": a.refresh_token}), 401
    )
    assert (
        await client.post("/api/auth/refresh", json={"refreshToken": b.refresh_token})
    ).status_code == 200


async def test_logout_all_revokes_every_session(client: httpx.AsyncClient) -> None:
    a = await login(client, "manager", "manager123")
    b = await login(client, "manager", "manager123")
    out = await client.post("/api/auth/logout", json={"all": True}, headers=a.headers)
    assert out.status_code == 204
    for s in (a, b):
        assert_error(
            await client.post("/api/auth/refresh", json={"refreshToken": s.refresh_token}), 401
        )


async def test_logout_cannot_revoke_another_users_session(client: httpx.AsyncClient) -> None:
    victim = await login(client, "manager", "manager123")
    attacker = await login(client, "agent", "agent123")
    out = await client.post(
        "/api/auth/logout", json={"refreshToken": victim.refresh_token}, headers=attacker.headers
    )
    assert out.status_code == 204
    ok = await client.post("/api/auth/refresh", json={"refreshToken": victim.refresh_token})
    assert ok.status_code == 200, ok.text


async def test_logout_requires_auth_and_a_target(client: httpx.AsyncClient, auth) -> None:
    assert_error(await client.post("/api/auth/logout", json={"all": True}), 401)
    assert_error(await client.post("/api/auth/logout", json={}, headers=auth("agent")), 422)
