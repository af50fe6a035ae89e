"""Structured logging: one JSON event per line (or a readable console line in dev).

structlog renders everything, including records from the standard library (uvicorn,
SQLAlchemy, temporalio), so every line has the same shape and carries the context bound with
`structlog.contextvars` (request_id, user_id, call_sid).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from core.config import Settings

# Loggers that would otherwise print with their own handlers or duplicate our access log.
_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "temporalio", "sqlalchemy", "alembic", "asyncio")
_SILENCED_LOGGERS = ("uvicorn.access",)  # api.middleware writes the access log


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is now (test runners swap it), not the one at start."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _drop_color_message(_: Any, __: str, event_dict: Any) -> Any:
    # uvicorn passes an ANSI-coloured copy of each message as an `extra`; JSON has no use for it.
    event_dict.pop("color_message", None)
    return event_dict


def _level(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.strip().upper())
    return level if level is not None else logging.INFO


def configure_logging(settings: Settings) -> None:
    """Route structlog and stdlib logging through one renderer; safe to call again."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if settings.log_json:
        # The traceback goes inside the event as one escaped string: still one line.
        final += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        final += [structlog.dev.ConsoleRenderer()]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_level(settings.log_level))
    for name in _ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # SQLAlchemy logs every statement at INFO when echo is on; keep it to warnings by default.
    logging.getLogger("sqlalchemy").setLevel(max(logging.WARNING, root.level))
    for name in _SILENCED_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = False


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
