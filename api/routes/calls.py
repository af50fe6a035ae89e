"""Live calls: the list from Temporal visibility (CallStatus = in_progress) and one call's
state from its workflow's `state` query, with sensitive variables masked. Manager and above.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field
from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import RedisDep, RequirePermission, SessionDep
from api.routes.analytics import sees_numbers
from core import analytics as kpi
from core.calls import STATE_QUERY, CallState
from core.db.models import Flow, FlowExecution
from core.errors import AppError, NotFound
from core.schemas import CamelModel, ErrorOut
from core.temporal import CALL_STATUS, CURRENT_NODE, FLOW_ID, QUEUE_NAME, call_workflow_id

router = APIRouter(prefix="/api/calls", tags=["calls"])

Monitor = RequirePermission("calls:live")

MAX_ACTIVE = 500
QUERY_TIMEOUT_S = 5.0
CALL_SID = r"^[A-Za-z0-9_.:\-]{1,64}$"


class TemporalDown(AppError):
    code = "temporal_unavailable"
    status = 503
    default_detail = "Temporal is not reachable; live call state is unavailable"


def _client(request: Request) -> Client:
    client = getattr(request.app.state, "temporal", None)
    if client is None:
        raise TemporalDown()
    return client  # type: ignore[no-any-return]


async def _queue_positions(redis: Any, sids: list[str]) -> dict[str, dict[str, Any]]:
    """Queue, position (1-based) and wait for each call waiting in a queue (one pipeline)."""
    if not sids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.hmget(f"qe:{sid}", "q", "status", "arr")
        entries = await pipe.execute()
    waiting = [(sid, e) for sid, e in zip(sids, entries, strict=True) if e[0] and e[1] == "waiting"]
    if not waiting:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for sid, e in waiting:
            pipe.zrank(f"queue:{e[0]}:wait", sid)
        ranks = await pipe.execute()
    now_ms = time.time() * 1000
    out = {}
    for (sid, e), rank in zip(waiting, ranks, strict=True):
        if rank is None:
            continue
        out[sid] = {
            "queue_id": int(e[0]),
            "queue_position": int(rank) + 1,
            "queue_wait": round(max(0.0, now_ms - float(e[2] or now_ms)) / 1000, 1),
        }
    return out


class ActiveCall(CamelModel):
    call_sid: str
    flow_id: int | None
    current_node: str | None
    queue_name: str | None
    started_at: datetime | None
    duration: float | None = Field(description="seconds since the call started")
    queue_id: int | None = None
    queue_position: int | None = Field(default=None, description="1 = next to be answered")
    queue_wait: float | None = None


class ActiveCallsOut(CamelModel):
    items: list[ActiveCall]
    count: int
    truncated: bool


@router.get("/active", response_model=ActiveCallsOut,
            responses={503: {"model": ErrorOut}, 422: {"model": ErrorOut}})
async def list_active_calls(
    request: Request,
    _: Monitor,
    redis: RedisDep,
    limit: Annotated[int, Query(ge=1, le=MAX_ACTIVE)] = 200,
    flow_id: Annotated[int | None, Query(alias="flowId", ge=1, le=2**31 - 1)] = None,
) -> ActiveCallsOut:
    """Calls in progress now, from Temporal visibility (eventually consistent, ~1 s)."""
    client = _client(request)
    query = f"WorkflowType = 'CallWorkflow' AND {CALL_STATUS.name} = 'in_progress'"
    if flow_id is not None:
        query += f" AND {FLOW_ID.name} = {int(flow_id)}"  # an int by validation
    now = datetime.now(UTC)
    items: list[ActiveCall] = []
    truncated = False
    try:
        async for wf in client.list_workflows(query, limit=limit + 1):
            if len(items) == limit:
                truncated = True
                break
            attrs = wf.typed_search_attributes
            sid = wf.id.removeprefix("call-")
            started = wf.start_time
            items.append(
                ActiveCall(
                    call_sid=sid,
                    flow_id=attrs.get(FLOW_ID),
                    current_node=attrs.get(CURRENT_NODE),
                    queue_name=attrs.get(QUEUE_NAME),
                    started_at=started,
                    duration=round((now - started).total_seconds(), 1) if started else None,
                )
            )
    except RPCError as exc:
        raise TemporalDown(f"Temporal visibility failed: {exc.message}") from exc
    positions = await _queue_positions(redis, [i.call_sid for i in items])
    items = [i.model_copy(update=positions.get(i.call_sid, {})) for i in items]
    return ActiveCallsOut(items=items, count=len(items), truncated=truncated)


class VisitOut(CamelModel):
    seq: int
    node_id: str
    node_type: str
    node_name: str | None
    entered_at: datetime
    exited_at: datetime | None
    port: str | None


class CallOut(CamelModel):
    call_sid: str
    flow_id: int | None
    flow_name: str | None
    flow_version: int | None
    status: str
    caller: str | None = Field(description="masked for roles below admin")
    current_node: str | None
    current_node_name: str | None
    current_node_type: str | None
    variables: dict[str, Any] = Field(description="sensitive values masked")
    turn: int
    started_at: datetime
    waiting_since: datetime | None
    awaiting: str | None = Field(description="what the call waits for (gather, dial, hold...)")
    queue_id: int | None = None
    queue_position: int | None = None
    queue_wait: float | None = None
    history: list[VisitOut]


@router.get(
    "/{call_sid}",
    response_model=CallOut,
    responses={404: {"model": ErrorOut}, 503: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
async def get_call(
    request: Request,
    call_sid: Annotated[str, Path(pattern=CALL_SID)],
    user: Monitor,
    session: SessionDep,
    redis: RedisDep,
) -> CallOut:
    """One call's live state from its workflow: node, variables (masked), queue position."""
    client = _client(request)
    handle = client.get_workflow_handle(call_workflow_id(call_sid))
    try:
        state: CallState = await handle.query(
            STATE_QUERY, result_type=CallState, rpc_timeout=timedelta(seconds=QUERY_TIMEOUT_S)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no call {call_sid}") from exc
        raise TemporalDown(f"the call's state query failed: {exc.message}") from exc
    row = (
        await session.execute(
            select(FlowExecution.caller, Flow.name)
            .outerjoin(Flow, Flow.id == FlowExecution.flow_id)
            .where(FlowExecution.call_sid == call_sid)
        )
    ).first()
    caller, flow_name = (row[0], row[1]) if row else (None, None)
    if flow_name is None and state.flow_id is not None:
        flow_name = await session.scalar(select(Flow.name).where(Flow.id == state.flow_id))
    reveal = sees_numbers(user)
    current = next(
        (v for v in reversed(state.history) if v.node_id == state.current_node), None
    )
    awaiting = None
    if state.pending is not None:
        waits = getattr(state.pending, "awaiting", None)
        awaiting = getattr(waits, "kind", None) if waits is not None else None
    queue = (await _queue_positions(redis, [call_sid])).get(call_sid, {})
    return CallOut(
        call_sid=state.call_sid,
        flow_id=state.flow_id,
        flow_name=flow_name,
        flow_version=state.flow_version,
        status=state.status,
        caller=kpi.caller_for(reveal, caller),
        current_node=state.current_node,
        current_node_name=current.node_name if current else None,
        current_node_type=current.node_type if current else None,
        variables=kpi.mask_variables(dict(state.variables), reveal_numbers=reveal),
        turn=state.turn,
        started_at=state.started_at,
        waiting_since=state.waiting_since,
        awaiting=awaiting,
        history=[VisitOut.model_validate(v, from_attributes=True) for v in state.history],
        **queue,
    )
