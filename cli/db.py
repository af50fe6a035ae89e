"""The database the CLI works on: DATABASE_URL, else the embedded server (reused or started)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from cli.stack import (
    APP_DATABASE,
    RESERVED_PORTS,
    StackError,
    Supervisor,
    ensure_database,
    ensure_port_free,
    logs_dir,
    pg_probe,
    pg_url,
    port_in_use,
    start_postgres,
)
from core.config import Settings


@contextlib.asynccontextmanager
async def app_database(settings: Settings) -> AsyncIterator[str]:
    """Yield the app database URL; start the embedded PostgreSQL only for the block if needed.

    When `ivr dev` is already running, its PostgreSQL holds the port and we use it as is.
    """
    if settings.database_url:
        yield settings.database_url
        return
    port = settings.embedded_pg_port
    admin = pg_url(port)
    if port in RESERVED_PORTS:  # never mistake the system PostgreSQL for ours
        ensure_port_free(port, "PostgreSQL")
    if port_in_use(port):
        try:
            await pg_probe(admin)
        except Exception as exc:
            raise StackError(
                f"port {port} is taken by something that is not our PostgreSQL ({exc!r}); "
                "set IVR_PG_PORT to a free port or DATABASE_URL to your database"
            ) from exc
        await ensure_database(admin, APP_DATABASE)
        yield pg_url(port, APP_DATABASE)
        return
    with Supervisor(logs_dir(settings)) as sup:
        await start_postgres(sup, settings.data_dir / "postgres", port)
        await ensure_database(admin, APP_DATABASE)
        yield pg_url(port, APP_DATABASE)
