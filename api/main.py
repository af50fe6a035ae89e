"""The API application: `uvicorn api.main:create_app --factory`.

Nothing connects at import. The lifespan builds the database engine, the Redis client and
(in the background, with retries) the Temporal client, and keeps them on `app.state`; the API
serves, and `/health` says what is down, even while Temporal is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from api.errors import install_error_handlers
from api.events import install as install_live_events
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.routes import include_routers
from core.config import Env, Settings, get_settings
from core.db.session import make_engine, make_sessionmaker
from core.logging import configure_logging
from core.redis import make_redis
from core.runtime import freeze_startup_heap
from core.security import dummy_password_hash

log = structlog.stdlib.get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
TEMPORAL_RETRY_MAX_S = 30.0

_DESCRIPTION = """
IVR and contact-centre routing. JSON bodies are camelCase.

Authenticate with **Authorize** (username and password), or `POST /api/auth/login` and send
`Authorization: Bearer <accessToken>`. Errors are `{"error": code, "detail": message}`.
"""


async def _connect_temporal(app: FastAPI, settings: Settings) -> None:
    """Connect to Temporal, retrying with backoff until it answers or the app stops."""
    from core.temporal import connect, temporal_target

    delay_s = 0.5
    while True:
        try:
            app.state.temporal = await connect(settings)
        except Exception as exc:
            log.warning(
                "temporal_connect_failed",
                target=temporal_target(settings),
                error=str(exc),
                retry_in_s=delay_s,
            )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, TEMPORAL_RETRY_MAX_S)
        else:
            log.info("temporal_connected", target=temporal_target(settings))
            return


# Imported on the first webhook otherwise (api.carriers.gateway): loaded before the heap is
# frozen, so their objects are not walked by every later garbage collection.
_LAZY_MODULES = ("api.call_gateway", "api.opening", "core.call_records", "core.events")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (run `ivr dev`, or set DATABASE_URL)")
    engine = make_engine(settings.database_url)
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.redis = make_redis(settings.redis_url)
    app.state.temporal = None
    temporal_task = asyncio.create_task(_connect_temporal(app, settings), name="temporal-connect")
    # The first login would otherwise pay for building the dummy hash (timing-equalisation).
    await asyncio.to_thread(dummy_password_hash)
    if settings.env != Env.test:  # test processes build many apps: nothing to freeze there
        frozen = freeze_startup_heap(*_LAZY_MODULES)
        log.info("startup_heap_frozen", objects=frozen)
    log.info("api_started", env=settings.env.value)
    try:
        yield
    finally:
        temporal_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await temporal_task
        await app.state.redis.aclose()
        await engine.dispose()
        log.info("api_stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; with no argument, settings come from the environment."""
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title="IVR platform API",
        version="0.1.0",
        description=_DESCRIPTION,
        docs_url="/api/docs",
        redoc_url="/api/redoc",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        openapi_url="/api/openapi.json",
        swagger_ui_parameters={"persistAuthorization": True},
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Added last = outermost: the request context wraps everything, the body limit included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestContextMiddleware)
    include_routers(app)
    install_live_events(app)  # Socket.IO at /socket.io, fed from Redis pub/sub
    return app
