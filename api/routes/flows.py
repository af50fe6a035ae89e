"""Flows REST: drafts, validation, publishing immutable versions, rollback, export/import,
the numbers each flow answers and the default flow.

Permissions: reading needs `flows:view`, editing drafts `flows:edit`, anything that changes
what live calls get (publish, rollback, numbers, default, deleting a published flow)
`flows:publish`. An invalid flow document is a 422 `invalid_flow` whose body carries, next to
`error` and `detail`, a `problems` list naming each node and field.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import Field

from api.deps import AuditDep, PagingDep, RequirePermission, SessionDep
from core.db.models import Flow, FlowVersion
from core.errors import Forbidden
from core.flows.schema import Connection, FlowDefinition, Node, WireModel
from core.flows.validate import Problem, problems_from_errors
from core.permissions import has_permission
from core.repositories import flows as repo
from core.schemas import CamelModel, ErrorOut, Page

EXPORT_FORMAT = "ivr-flow"
EXPORT_FORMAT_VERSION = 1


class FlowRoute(APIRoute):
    """Turns body validation errors and FlowProblems into 422s whose problems name nodes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = list(exc.errors())
                if not errors or any(
                    e.get("type") == "json_invalid" or tuple(e.get("loc", ()))[:1] != ("body",)
                    for e in errors
                ):
                    raise  # malformed JSON, path or query errors: the usual handler
                try:
                    raw = await request.json()
                except ValueError:
                    raw = None
                relative = [{**e, "loc": tuple(e["loc"])[1:]} for e in errors]
                return problems_response(
                    repo.FlowProblems(
                        problems_from_errors(relative, raw), "the flow document is not valid"
                    )
                )
            except repo.FlowProblems as exc:
                return problems_response(exc)

        return route_handler


def problems_response(exc: repo.FlowProblems) -> JSONResponse:
    return JSONResponse(
        {
            "error": exc.code,
            "detail": exc.detail,
            "problems": [p.model_dump(mode="json") for p in exc.problems],
        },
        status_code=exc.status,
    )


router = APIRouter(prefix="/api/flows", tags=["flows"], route_class=FlowRoute)

# Path ids bounded to the integer columns, so a huge id is a 422, not a database error.
FlowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
VersionNo = Annotated[int, Path(ge=1, le=2**31 - 1)]

Viewer = RequirePermission("flows:view")
Editor = RequirePermission("flows:edit")
Publisher = RequirePermission("flows:publish")


# --- bodies ----------------------------------------------------------------------------------


class FlowProblemsOut(CamelModel):
    error: str
    detail: str
    problems: list[Problem]


class FlowDraftIn(FlowDefinition):
    """The whole draft, plus the revision it was edited from (optimistic concurrency)."""

    draft_revision: int = Field(ge=1, le=2**31 - 1)


class FlowDocument(FlowDefinition):
    """Export/import: one JSON document with the flow's metadata, nodes and connections."""

    format: Literal["ivr-flow"] = EXPORT_FORMAT
    format_version: Literal[1] = EXPORT_FORMAT_VERSION


class PublishIn(WireModel):
    note: Annotated[str, Field(max_length=500)] | None = None


class NumbersIn(WireModel):
    numbers: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        max_length=repo.MAX_NUMBERS_PER_FLOW,
        description="called numbers; E.164 or Indian national format (normalised to E.164)",
    )


class FlowSummaryOut(CamelModel):
    id: int
    name: str
    description: str | None
    is_default: bool
    live_version: int | None
    draft_revision: int
    numbers: list[str]
    node_count: int
    created_at: datetime
    updated_at: datetime


class FlowOut(FlowSummaryOut):
    """A flow's metadata and its whole draft."""

    entry_node: str | None
    nodes: list[Node]
    connections: list[Connection]


class ValidationOut(CamelModel):
    valid: bool
    problems: list[Problem]


class VersionOut(CamelModel):
    version: int
    checksum: str
    note: str | None
    published_at: datetime
    published_by: int | None
    is_live: bool


class VersionDetailOut(VersionOut):
    definition: dict[str, Any]


class NumbersOut(CamelModel):
    flow_id: int
    numbers: list[str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
}
_ONE: dict[int | str, dict[str, Any]] = {**_ERRORS, 404: {"model": ErrorOut}}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": FlowProblemsOut, "description": "the flow is not valid"},
}
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut}}


# --- helpers ---------------------------------------------------------------------------------


def _summary(flow: Flow, numbers: list[str], node_count: int) -> FlowSummaryOut:
    return FlowSummaryOut(
        id=flow.id,
        name=flow.name,
        description=flow.description,
        is_default=flow.is_default,
        live_version=flow.live_version,
        draft_revision=flow.draft_revision,
        numbers=numbers,
        node_count=node_count,
        created_at=flow.created_at,
        updated_at=flow.updated_at,
    )


async def _flow_out(session: SessionDep, flow: Flow) -> FlowOut:
    defn = await repo.load_draft(session, flow)
    numbers = await repo.numbers_of(session, flow.id)
    return FlowOut(
        **_summary(flow, numbers, len(defn.nodes)).model_dump(),
        entry_node=defn.entry_node,
        nodes=defn.nodes,
        connections=defn.connections,
    )


def _version_out(row: FlowVersion, flow: Flow) -> VersionOut:
    return VersionOut(
        version=row.version,
        checksum=row.checksum,
        note=row.note,
        published_at=row.published_at,
        published_by=row.published_by,
        is_live=flow.live_version == row.version,
    )


def _definition_only(body: FlowDefinition) -> FlowDefinition:
    """The FlowDefinition inside a body that extends it (draft revision, export format)."""
    return FlowDefinition.model_validate(
        {name: getattr(body, name) for name in FlowDefinition.model_fields}
    )


def _graph_summary(defn: FlowDefinition) -> dict[str, Any]:
    return {
        "name": defn.name,
        "nodes": len(defn.nodes),
        "connections": len(defn.connections),
        "checksum": repo.checksum(defn),
    }


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=Page[FlowSummaryOut], responses=_ERRORS)
async def list_flows(_: Viewer, session: SessionDep, paging: PagingDep) -> Page[FlowSummaryOut]:
    """List flows with their live version, draft revision and numbers."""
    listings = await repo.list_flows(session)
    page = listings[paging.offset : paging.offset + paging.limit]
    return Page[FlowSummaryOut](
        items=[_summary(x.flow, x.numbers, x.node_count) for x in page],
        total=len(listings),
        offset=paging.offset,
        limit=paging.limit,
    )


@router.post(
    "", status_code=201, response_model=FlowOut, responses={**_ERRORS, **_CONFLICT, **_INVALID}
)
async def create_flow(
    body: FlowDefinition, user: Editor, session: SessionDep, audit: AuditDep
) -> FlowOut:
    """Create a flow whose draft is the given definition (not published)."""
    flow = await repo.create_flow(session, body, created_by=user.id)
    await audit.record("flow.create", "flow", flow.id, after=_graph_summary(body))
    out = await _flow_out(session, flow)
    await session.commit()
    return out


@router.post(
    "/import",
    status_code=201,
    response_model=FlowOut,
    responses={**_ERRORS, **_CONFLICT, **_INVALID},
)
async def import_flow(
    body: FlowDocument,
    user: Editor,
    session: SessionDep,
    audit: AuditDep,
    name: Annotated[
        str | None,
        Query(min_length=1, max_length=128, description="import under this name instead"),
    ] = None,
) -> FlowOut:
    """Create a new draft flow from an exported document."""
    defn = _definition_only(body)
    if name is not None:
        defn = defn.model_copy(update={"name": name.strip() or defn.name})
    flow = await repo.create_flow(session, defn, created_by=user.id)
    await audit.record("flow.import", "flow", flow.id, after=_graph_summary(defn))
    out = await _flow_out(session, flow)
    await session.commit()
    return out


@router.get("/{flow_id}", response_model=FlowOut, responses=_ONE)
async def get_flow(flow_id: FlowId, _: Viewer, session: SessionDep) -> FlowOut:
    """A flow's metadata and its draft."""
    return await _flow_out(session, await repo.get_flow(session, flow_id))


@router.put("/{flow_id}", response_model=FlowOut, responses={**_ONE, **_CONFLICT, **_INVALID})
async def update_flow(
    flow_id: FlowId, body: FlowDraftIn, _: Editor, session: SessionDep, audit: AuditDep
) -> FlowOut:
    """Replace the draft (nodes and connections together); 409 if `draftRevision` is stale."""
    before = await repo.get_flow(session, flow_id)
    before_summary = repo.summary(before)
    defn = _definition_only(body)
    flow = await repo.replace_draft(session, flow_id, defn, expected_revision=body.draft_revision)
    await audit.record(
        "flow.update",
        "flow",
        flow.id,
        before=before_summary,
        after={**repo.summary(flow), **_graph_summary(defn)},
    )
    out = await _flow_out(session, flow)
    await session.commit()
    return out


@router.delete(
    "/{flow_id}", status_code=204, response_class=Response, responses={**_ONE, **_CONFLICT}
)
async def delete_flow(
    flow_id: FlowId, user: Editor, session: SessionDep, audit: AuditDep
) -> Response:
    """Delete a flow (soft); its numbers fall back to the default flow. Not the default flow."""
    flow = await repo.get_flow(session, flow_id, for_update=True)
    if flow.live_version is not None and not has_permission(user.role, "flows:publish"):
        raise Forbidden("deleting a published flow requires permission flows:publish")
    before = repo.summary(flow)
    released = await repo.soft_delete(session, flow)
    await audit.record(
        "flow.delete",
        "flow",
        flow.id,
        before={**before, "numbers": released},
        after={"deleted": True},
    )
    await session.commit()
    return Response(status_code=204)


@router.post("/{flow_id}/validate", response_model=ValidationOut, responses=_ONE)
async def validate_flow_draft(
    flow_id: FlowId, _: Viewer, session: SessionDep, audit: AuditDep
) -> ValidationOut:
    """Every problem that would stop the draft from being published (changes nothing)."""
    flow = await repo.get_flow(session, flow_id)
    problems = await repo.validate_draft(session, flow)
    # Audited like every POST: who checked which draft revision, and what they were told.
    await audit.record(
        "flow.validate",
        "flow",
        flow_id,
        after={"draft_revision": flow.draft_revision, "problems": len(problems)},
    )
    await session.commit()
    return ValidationOut(valid=not problems, problems=problems)


@router.post(
    "/{flow_id}/publish", status_code=201, response_model=VersionOut, responses={**_ONE, **_INVALID}
)
async def publish_flow(
    flow_id: FlowId,
    user: Publisher,
    session: SessionDep,
    audit: AuditDep,
    body: Annotated[PublishIn | None, Body()] = None,
) -> VersionOut:
    """Validate the draft, freeze it as a new immutable version and make that version live."""
    previous = (await repo.get_flow(session, flow_id)).live_version
    version = await repo.publish(
        session, flow_id, published_by=user.id, note=body.note if body else None
    )
    flow = await repo.get_flow(session, flow_id)
    await audit.record(
        "flow.publish",
        "flow",
        flow_id,
        before={"live_version": previous},
        after={"live_version": version.version, "checksum": version.checksum},
    )
    await session.commit()
    return _version_out(version, flow)


@router.get("/{flow_id}/versions", response_model=list[VersionOut], responses=_ONE)
async def list_versions(flow_id: FlowId, _: Viewer, session: SessionDep) -> list[VersionOut]:
    """Published versions, newest first."""
    flow = await repo.get_flow(session, flow_id)
    return [_version_out(v, flow) for v in await repo.list_versions(session, flow_id)]


@router.get("/{flow_id}/versions/{version}", response_model=VersionDetailOut, responses=_ONE)
async def get_version(
    flow_id: FlowId, version: VersionNo, _: Viewer, session: SessionDep
) -> VersionDetailOut:
    """One published version with its frozen definition."""
    flow = await repo.get_flow(session, flow_id)
    row = await repo.get_version(session, flow_id, version)
    return VersionDetailOut(**_version_out(row, flow).model_dump(), definition=row.definition)


@router.post("/{flow_id}/versions/{version}/publish", response_model=VersionOut, responses=_ONE)
async def rollback_flow(
    flow_id: FlowId, version: VersionNo, _: Publisher, session: SessionDep, audit: AuditDep
) -> VersionOut:
    """Make an earlier (or later) published version live again; calls in progress keep theirs."""
    previous = (await repo.get_flow(session, flow_id)).live_version
    row = await repo.make_version_live(session, flow_id, version)
    flow = await repo.get_flow(session, flow_id)
    await audit.record(
        "flow.rollback",
        "flow",
        flow_id,
        before={"live_version": previous},
        after={"live_version": row.version, "checksum": row.checksum},
    )
    await session.commit()
    return _version_out(row, flow)


@router.get("/{flow_id}/export", response_model=FlowDocument, responses=_ONE)
async def export_flow(
    flow_id: FlowId,
    _: Viewer,
    session: SessionDep,
    response: Response,
    version: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="a published version; default: the draft")
    ] = None,
) -> FlowDocument:
    """The flow as one JSON document (metadata, nodes, connections) that import accepts."""
    flow = await repo.get_flow(session, flow_id)
    if version is None:
        defn = await repo.load_draft(session, flow)
    else:
        row = await repo.get_version(session, flow_id, version)
        defn = FlowDefinition.model_validate(row.definition)
    suffix = f"-v{version}" if version else ""
    response.headers["Content-Disposition"] = f'attachment; filename="flow-{flow_id}{suffix}.json"'
    return FlowDocument.model_validate(defn.to_json_dict())


@router.put(
    "/{flow_id}/numbers",
    response_model=NumbersOut,
    responses={**_ONE, **_CONFLICT, 422: {"model": ErrorOut}},
)
async def set_flow_numbers(
    flow_id: FlowId, body: NumbersIn, _: Publisher, session: SessionDep, audit: AuditDep
) -> NumbersOut:
    """Set the called numbers this flow answers (E.164; default region India)."""
    numbers = repo.normalise_numbers(body.numbers)
    flow = await repo.get_flow(session, flow_id, for_update=True)
    before = await repo.numbers_of(session, flow_id)
    await repo.set_numbers(session, flow, numbers)
    await audit.record(
        "flow.numbers", "flow", flow_id, before={"numbers": before}, after={"numbers": numbers}
    )
    await session.commit()
    return NumbersOut(flow_id=flow_id, numbers=numbers)


@router.post("/{flow_id}/default", response_model=FlowSummaryOut, responses={**_ONE, **_CONFLICT})
async def make_default_flow(
    flow_id: FlowId, _: Publisher, session: SessionDep, audit: AuditDep
) -> FlowSummaryOut:
    """Make this (published) flow the one that answers numbers no other flow claims."""
    flow = await repo.get_flow(session, flow_id, for_update=True)
    previous = await repo.set_default(session, flow)
    await audit.record(
        "flow.default",
        "flow",
        flow_id,
        before={"default_flow_id": previous.id if previous else None},
        after={"default_flow_id": flow_id},
    )
    numbers = await repo.numbers_of(session, flow_id)
    defn = await repo.load_draft(session, flow)
    await session.commit()
    return _summary(flow, numbers, len(defn.nodes))
