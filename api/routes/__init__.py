"""Every router of the API, in one list: a new area adds one line to ROUTERS.

Each router carries its own prefix and tags (`APIRouter(prefix="/api/flows", tags=["flows"])`).
Entries are "module:attribute" strings so this package imports nothing until the app is built.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

# The carriers' webhooks first: routes are matched in order, and they are most of the traffic.
ROUTERS: tuple[str, ...] = (
    "api.carriers.exotel:router",
    "api.carriers.exotel_sms:router",
    "api.carriers.xml:router",
    "api.routes.health:router",
    "api.routes.auth:router",
    "api.routes.users:router",
    "api.routes.users:audit_router",
    "api.routes.flows:router",
    "api.routes.business_hours:router",
    "api.routes.agents:router",
    "api.routes.queues:router",
    "api.routes.callbacks:router",
    "api.routes.analytics:router",
    "api.routes.calls:router",
)


def load_routers() -> list[APIRouter]:
    routers: list[APIRouter] = []
    for spec in ROUTERS:
        module_name, _, attribute = spec.partition(":")
        router = getattr(importlib.import_module(module_name), attribute or "router")
        if not isinstance(router, APIRouter):
            raise TypeError(f"{spec} is not an APIRouter")
        routers.append(router)
    return routers


def _summaries_from_docstrings(router: APIRouter) -> None:
    # The convention: a route's one-line docstring is its OpenAPI summary (FastAPI would
    # otherwise title-case the function name and put the docstring in the description).
    for route in router.routes:
        if isinstance(route, APIRoute) and not route.summary and route.endpoint.__doc__:
            route.summary = route.endpoint.__doc__.strip().splitlines()[0].rstrip(".")


def include_routers(app: FastAPI) -> None:
    for router in load_routers():
        _summaries_from_docstrings(router)
        app.include_router(router)
