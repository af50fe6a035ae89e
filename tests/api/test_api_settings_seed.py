"""Production settings refuse unsafe values; the seed is idempotent and safe in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.config import Settings
from core.db.models import AuditLog, User
from core.security import hash_password, verify_password
from core.seed import SEED_STEPS, SeedRefused, run_seed, seed_users, seed_users_plan

GOOD_PRODUCTION = {
    "IVR_ENV": "production",
    "IVR_JWT_SECRET": "k7Qm2Vx9Lr4Tz8Np1Wd6Hs3Jc5Bf0Gy_aE",
    "IVR_WEBHOOK_TOKEN": "w3Rt8Yp2Kq6Zn1Lm9Vb4Xc7D",
    "IVR_ADMIN_PASSWORD": "Correct-Horse-Battery-42",
    "database_url": "postgresql://ivr@db:5432/ivr",
    "redis_url": "redis://redis:6379/0",
    "temporal_address": "temporal:7233",
}


def _production(**overrides: str) -> Settings:
    return Settings(_env_file=None, **{**GOOD_PRODUCTION, **overrides})


def test_production_with_good_values_starts() -> None:
    settings = _production()
    assert settings.is_production
    assert settings.jwt_secret.get_secret_value() == GOOD_PRODUCTION["IVR_JWT_SECRET"]


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"IVR_JWT_SECRET": "dev-only-jwt-secret-change-me-0123456789abcdef"}, "IVR_JWT_SECRET"),
        ({"IVR_JWT_SECRET": "please-change-me-to-something-long-enough"}, "IVR_JWT_SECRET"),
        ({"IVR_JWT_SECRET": "short-but-random-9f8e"}, "IVR_JWT_SECRET"),
        ({"IVR_WEBHOOK_TOKEN": "your-webhook-token-goes-here-ok"}, "IVR_WEBHOOK_TOKEN"),
        ({"IVR_ADMIN_PASSWORD": "admin123"}, "IVR_ADMIN_PASSWORD"),
        ({"IVR_ADMIN_PASSWORD": "Tiny-1"}, "IVR_ADMIN_PASSWORD"),
        ({"database_url": ""}, "DATABASE_URL"),
        ({"temporal_address": ""}, "TEMPORAL_ADDRESS"),
    ],
)
def test_production_refuses_placeholder_or_default_secrets(
    overrides: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        _production(**overrides)


def test_dev_defaults_are_fine_outside_production() -> None:
    settings = Settings(_env_file=None, IVR_ENV="dev")
    assert settings.admin_password.get_secret_value() == "admin123"


def test_seed_plan_in_production_is_the_admin_alone() -> None:
    plan = seed_users_plan(_production())
    assert [(u, r.value) for u, _, r, _ in plan] == [("admin", "super_admin")]
    assert plan[0][1] == GOOD_PRODUCTION["IVR_ADMIN_PASSWORD"]
    # Settings already refuse it, but the seed does not rely on that alone.
    unsafe = _production().model_copy()
    object.__setattr__(unsafe, "admin_password", type(unsafe.admin_password)("admin123"))
    with pytest.raises(SeedRefused):
        seed_users_plan(unsafe)


def test_seed_plan_in_dev_has_the_three_demo_users() -> None:
    plan = seed_users_plan(Settings(_env_file=None, IVR_ENV="dev"))
    assert [(u, p, r.value) for u, p, r, _ in plan] == [
        ("admin", "admin123", "super_admin"),
        ("manager", "manager123", "manager"),
        ("agent", "agent123", "agent"),
    ]


async def test_seed_users_is_idempotent_and_keeps_changed_passwords(
    api_settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db() as s:
        await seed_users(s, api_settings)
        await s.commit()
    async with db() as s:
        manager = (await s.execute(select(User).where(User.username == "manager"))).scalar_one()
        manager.password_hash = hash_password("operator-changed-it")
        await s.commit()
    for _ in range(2):
        async with db() as s:
            await seed_users(s, api_settings)
            await s.commit()
    async with db() as s:
        users = (await s.execute(select(User).order_by(User.id))).scalars().all()
        seeded_rows = (
            await s.execute(
                select(func.count()).select_from(AuditLog).where(AuditLog.action == "user.seed")
            )
        ).scalar_one()
    assert [(u.username, u.role) for u in users] == [
        ("admin", "super_admin"),
        ("manager", "manager"),
        ("agent", "agent"),
    ]
    manager = users[1]
    assert verify_password(manager.password_hash, "operator-changed-it")
    assert verify_password(users[0].password_hash, "admin123")
    assert seeded_rows == 3  # one audit row per user actually created


async def test_run_seed_runs_every_step_and_can_run_again(api_settings: Settings) -> None:
    assert SEED_STEPS[0] is seed_users
    await run_seed(api_settings)
    await run_seed(api_settings)


def test_password_hashes_use_argon2id_with_rfc9106_parameters() -> None:
    # This module does not swap in the fast test hasher: these are the production parameters.
    stored = hash_password("any password")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, "any password")
    assert not verify_password(stored, "another password")
    assert not verify_password("not-a-hash", "any password")
