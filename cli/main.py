"""The `ivr` command: `dev`, `db`, `seed`, and whatever other modules register on `app`.

Adding a command from another module (cli/call.py, cli/loadtest.py, ...): in that module,
`from cli.main import app` and decorate with `@app.command()` (or build a `typer.Typer()` and
`app.add_typer(sub, name="flows")`), then add its one import line at the bottom of this file.
The import sits at the bottom so `app` exists when the module imports it back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from core.config import Settings

T = TypeVar("T")

app = typer.Typer(
    name="ivr",
    help="IVR platform: run the dev stack, manage the schema, seed data.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Schema migrations (Alembic) on DATABASE_URL or the embedded server.")
app.add_typer(db_app, name="db", no_args_is_help=True)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def say(message: str) -> None:
    typer.echo(message)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail(f"invalid settings:\n{exc}")


@app.command()
def dev(
    fake_carrier: Annotated[
        bool,
        typer.Option(
            "--fake-carrier",
            help="Also run the fake Exotel (tests/fakes, port IVR_FAKE_EXOTEL_PORT) and point "
            "the worker's Exotel client at it: callbacks dial through it into our webhooks.",
        ),
    ] = False,
) -> None:
    """Run everything locally: Temporal, PostgreSQL, Redis, worker, API and dashboard."""
    from cli.stack import run_dev

    raise typer.Exit(
        asyncio.run(run_dev(load_settings(), say=say, fake_carrier_on=fake_carrier))
    )


def _on_database(operation: Callable[[str], T]) -> T:
    """Run a blocking `operation(url)` against the app database (started if embedded)."""
    from cli.db import app_database
    from cli.stack import StackError

    async def run() -> T:
        async with app_database(load_settings()) as url:
            return await asyncio.to_thread(operation, url)

    try:
        return asyncio.run(run())
    except StackError as exc:
        fail(str(exc))


def _migrate_function(name: str) -> Callable[..., object]:
    from core.db import migrate

    function = getattr(migrate, name, None)
    if function is None:
        fail(f"core.db.migrate has no `{name}` yet")
    return function


def _drift_error() -> type[Exception]:
    from core.db import migrate

    return getattr(migrate, "SchemaDriftError", LookupError)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    upgrade = _migrate_function("upgrade")
    _on_database(lambda url: upgrade(url, revision))
    say(f"database upgraded to {revision}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: an id, -1, or base.")],
) -> None:
    """Migrate the database down to REVISION."""
    downgrade = _migrate_function("downgrade")
    _on_database(lambda url: downgrade(url, revision))
    say(f"database downgraded to {revision}")


@db_app.command("check")
def db_check() -> None:
    """Fail if the database schema differs from the models (unapplied or missing migrations)."""
    check = _migrate_function("check")
    try:
        _on_database(check)
    except _drift_error() as exc:
        fail(str(exc))
    say("database schema matches the models")


@db_app.command("current")
def db_current() -> None:
    """Print the revision the database is at (`none` if never migrated)."""
    current = _migrate_function("current")
    say(str(_on_database(current) or "none"))


@app.command()
def seed() -> None:
    """Create the default users and sample data (idempotent; dev passwords only in dev)."""
    try:
        from core.seed import run_seed  # type: ignore[import-not-found]
    except ImportError as exc:
        if exc.name not in ("core.seed", "core"):
            raise
        fail("core.seed is not available yet")
    settings = load_settings()

    def seed_on(url: str) -> None:
        asyncio.run(run_seed(settings.model_copy(update={"database_url": url})))

    _on_database(seed_on)
    say("seeded")


# Commands contributed by other modules: one import line each (see the module docstring).
from cli import call, loadtest, loadtest_queue  # noqa: E402, F401
