"""The API over real HTTP: uvicorn serving `create_app(settings)` on a free port inside the
session event loop, an httpx client against it, and the seeded users logged in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import pytest_asyncio
from api_helpers import PASSWORDS, Session, login, serve
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.main import create_app
from core import security
from core.config import Settings
from core.db.session import make_engine, make_sessionmaker
from core.seed import seed_users


@pytest.fixture(scope="module")
def api_settings(settings: Settings) -> Settings:
    """The suite's settings; modules override this fixture to change a knob."""
    return settings


@pytest.fixture(scope="module")
def fast_hashing() -> Iterator[None]:
    """Argon2 at its cheapest while the module's app runs: the code path is the same, and a
    real-cost hash per login would make these tests minutes slower (cf. Django's test hasher).
    The production parameters are pinned by a test of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))
        security.dummy_password_hash.cache_clear()
        yield
    security.dummy_password_hash.cache_clear()


@pytest_asyncio.fixture(scope="module")
async def seeded(api_settings: Settings, fast_hashing: None) -> None:
    """The seeded users (only that step: other areas' seed steps are tested by their owners)."""
    engine = make_engine(api_settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            await seed_users(session, api_settings)
            await session.commit()
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def extra_routes() -> Callable[[FastAPI], None] | None:
    """Modules override this to add probe routes to the app under test."""
    return None


@pytest_asyncio.fixture(scope="module")
async def app(
    api_settings: Settings, seeded: None, extra_routes: Callable[[FastAPI], None] | None
) -> FastAPI:
    app = create_app(api_settings)
    if extra_routes is not None:
        extra_routes(app)
    return app


@pytest_asyncio.fixture(scope="module")
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def engine(api_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(api_settings.database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def db(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Direct database access, to check what the API wrote."""
    return make_sessionmaker(engine)


@pytest_asyncio.fixture(scope="module")
async def sessions(client: httpx.AsyncClient) -> dict[str, Session]:
    """A logged-in session per seeded role: admin (super_admin), manager, agent."""
    return {name: await login(client, name, password) for name, password in PASSWORDS.items()}


@pytest.fixture(scope="module")
def auth(sessions: dict[str, Session]) -> Callable[[str], dict[str, str]]:
    """`auth("manager")` -> headers with that user's bearer token."""

    def headers(name: str) -> dict[str, str]:
        return sessions[name].headers

    return headers
