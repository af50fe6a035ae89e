"""Agents REST: configuration in PostgreSQL, live status from Redis (changed only by Lua).

Reading needs `agents:view`; creating, editing and removing `agents:manage`; changing a status
`agents:status:any`, or `agents:status:own` for the agent linked to the caller's own user.
Agents may set offline, available or break; reserved, on_call and wrap_up follow from calls, and
a change the live state forbids (e.g. available while on a call) is a 409 saying why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field, field_validator

from api.deps import AuditDep, CurrentUser, PagingDep, RequirePermission, SessionDep
from core.db.models import Agent, User
from core.errors import Conflict, Forbidden, InvalidInput
from core.permissions import has_permission
from core.phone import to_e164
from core.repositories import routing as repo
from core.routing.model import AgentSnapshot
from core.routing.store import RoutingStore
from core.schemas import CamelModel, ErrorOut, InputModel, Page

router = APIRouter(prefix="/api/agents", tags=["agents"])

AgentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Viewer = RequirePermission("agents:view")
Manager = RequirePermission("agents:manage")
SkillName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Proficiency = Annotated[int, Field(ge=1, le=5)]

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
_ONE: dict[int | str, dict[str, Any]] = {**_ERRORS, 404: {"model": ErrorOut}}
_CONFLICT: dict[int | str, dict[str, Any]] = {**_ONE, 409: {"model": ErrorOut}}


def get_routing_store(request: Request) -> RoutingStore:
    """One store per app, on the app's Redis, rebuilding from and mirroring to PostgreSQL."""
    state = request.app.state
    store = getattr(state, "routing_store", None)
    if store is None:
        from core.routing.callbacks import hand_off

        async def handoff(assignments: list[Any]) -> None:
            await hand_off(state.redis, state.sessionmaker, assignments)

        store = RoutingStore(
            state.redis,
            loader=repo.make_loader(state.sessionmaker),
            mirror=repo.make_mirror(state.sessionmaker),
            handoff=handoff,
        )
        state.routing_store = store
    return store  # type: ignore[no-any-return]


StoreDep = Annotated[RoutingStore, Depends(get_routing_store)]


# --- bodies ----------------------------------------------------------------------------------


class AgentIn(InputModel):
    name: str = Field(min_length=1, max_length=128)
    phone_number: str = Field(
        min_length=5, max_length=32, description="E.164, or Indian national format"
    )
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    user_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    team: str | None = Field(default=None, pattern=r"^[A-Za-z0-9 _.-]{1,64}$")
    skills: dict[SkillName, Proficiency] = Field(
        default_factory=dict, max_length=50, description="skill → proficiency 1-5"
    )
    sequence: int = Field(default=0, ge=0, le=1_000_000)
    max_concurrent_calls: int = Field(default=1, ge=1, le=20)
    wrap_up_s: int = Field(default=30, ge=0, le=3600)
    is_active: bool = True

    @field_validator("phone_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        number = to_e164(value)
        if number is None:
            raise ValueError("not a phone number (use E.164, e.g. +919876543210)")
        return number


class StatusIn(InputModel):
    status: Literal["offline", "available", "break"] = Field(
        description="reserved, on_call and wrap_up follow from calls and cannot be set"
    )


class AgentOut(CamelModel):
    id: int
    name: str
    phone_number: str
    email: str | None
    user_id: int | None
    team: str | None
    skills: dict[str, int]
    sequence: int
    max_concurrent_calls: int
    wrap_up_s: int
    is_active: bool
    status: str
    status_changed_at: datetime
    last_call_ended_at: datetime | None
    active_calls: int = 0
    calls_handled_today: int = 0
    wrap_up_until: datetime | None = None
    created_at: datetime
    updated_at: datetime


def _ms(value: int) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value else None


def agent_out(agent: Agent, live: AgentSnapshot | None) -> AgentOut:
    out = AgentOut.model_validate(agent)
    if live is None:
        return out
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return out.model_copy(
        update={
            "status": live.status,
            "status_changed_at": _ms(live.changed_at_ms) or agent.status_changed_at,
            "last_call_ended_at": _ms(live.last_end_ms) or agent.last_call_ended_at,
            "active_calls": sum(1 for e, _ in live.calls.values() if e > now_ms),
            "calls_handled_today": live.handled_on(live.handled_day),
            "wrap_up_until": _ms(live.wrap_until_ms) if live.wrap_until_ms > now_ms else None,
        }
    )


async def _check_user(session: SessionDep, user_id: int | None, agent_id: int | None) -> None:
    if user_id is None:
        return
    user = await session.get(User, user_id)
    if user is None:
        raise InvalidInput(f"userId {user_id} is not a user")
    linked = await repo.agent_for_user(session, user_id)
    if linked is not None and linked.id != agent_id:
        raise Conflict(f"user {user_id} is already linked to agent {linked.id}")


def _apply(agent: Agent, body: AgentIn) -> None:
    agent.name = body.name
    agent.phone_number = body.phone_number
    agent.email = body.email
    agent.user_id = body.user_id
    agent.team = body.team
    agent.skills = dict(body.skills)
    agent.sequence = body.sequence
    agent.max_concurrent_calls = body.max_concurrent_calls
    agent.wrap_up_s = body.wrap_up_s
    agent.is_active = body.is_active


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=Page[AgentOut], responses=_ERRORS)
async def list_agents(
    _: Viewer,
    session: SessionDep,
    store: StoreDep,
    paging: PagingDep,
    team: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[
        Literal["offline", "available", "reserved", "on_call", "wrap_up", "break"] | None,
        Query(description="live status"),
    ] = None,
) -> Page[AgentOut]:
    """List agents with their live status."""
    await store.sweep()  # expired leases and finished wrap-ups show (and are mirrored) now
    rows, total = await repo.list_agents(
        session, offset=paging.offset, limit=paging.limit, team=team, status=status
    )
    live = {s.id: s for s in await store.snapshots([a.id for a in rows])}
    return Page[AgentOut](
        items=[agent_out(a, live.get(a.id)) for a in rows],
        total=total,
        offset=paging.offset,
        limit=paging.limit,
    )


@router.post("", status_code=201, response_model=AgentOut, responses=_CONFLICT)
async def create_agent(
    body: AgentIn, _: Manager, session: SessionDep, store: StoreDep, audit: AuditDep
) -> AgentOut:
    """Create an agent (offline until they, or a supervisor, make them available)."""
    await _check_user(session, body.user_id, None)
    agent = Agent(status="offline")
    _apply(agent, body)
    session.add(agent)
    await repo.flush_or_conflict(session, "that user is already linked to an agent")
    await audit.record("agent.create", "agent", agent.id, after=repo.agent_summary(agent))
    await session.commit()
    await session.refresh(agent)
    if agent.is_active:
        await store.upsert_agent(repo.agent_config(agent))
    return agent_out(agent, await store.agent(agent.id))


@router.get("/{agent_id}", response_model=AgentOut, responses=_ONE)
async def get_agent(agent_id: AgentId, _: Viewer, session: SessionDep, store: StoreDep) -> AgentOut:
    """One agent with its live status."""
    agent = await repo.get_agent(session, agent_id)
    await store.sweep()
    return agent_out(agent, await store.agent(agent_id))


@router.put("/{agent_id}", response_model=AgentOut, responses=_CONFLICT)
async def update_agent(
    agent_id: AgentId,
    body: AgentIn,
    _: Manager,
    session: SessionDep,
    store: StoreDep,
    audit: AuditDep,
) -> AgentOut:
    """Replace an agent's configuration (its live status and calls are kept)."""
    agent = await repo.get_agent(session, agent_id, for_update=True)
    await _check_user(session, body.user_id, agent_id)
    live = await store.agent(agent_id)
    if not body.is_active and live is not None and live.status in ("reserved", "on_call"):
        raise Conflict(f"agent {agent_id} is {live.status}: deactivate after the call ends")
    before = repo.agent_summary(agent)
    _apply(agent, body)
    await repo.flush_or_conflict(session, "that user is already linked to an agent")
    await audit.record(
        "agent.update", "agent", agent_id, before=before, after=repo.agent_summary(agent)
    )
    await session.commit()
    await session.refresh(agent)
    if agent.is_active:
        await store.upsert_agent(repo.agent_config(agent))
    else:
        await store.remove_agent(agent_id)
    return agent_out(agent, await store.agent(agent_id))


@router.delete("/{agent_id}", status_code=204, response_class=Response, responses=_CONFLICT)
async def delete_agent(
    agent_id: AgentId, _: Manager, session: SessionDep, store: StoreDep, audit: AuditDep
) -> Response:
    """Remove an agent; refused while they hold a call or a reservation."""
    agent = await repo.get_agent(session, agent_id, for_update=True)
    await store.remove_agent(agent_id)  # Conflict (409) if on a call or reserved
    before = repo.agent_summary(agent)
    agent.deleted_at = datetime.now(UTC)
    agent.is_active = False
    agent.user_id = None
    agent.status = "offline"
    await audit.record("agent.delete", "agent", agent_id, before=before, after={"deleted": True})
    await session.commit()
    return Response(status_code=204)


@router.put("/{agent_id}/status", response_model=AgentOut, responses=_CONFLICT)
async def set_agent_status(
    agent_id: AgentId,
    body: StatusIn,
    user: CurrentUser,
    session: SessionDep,
    store: StoreDep,
    audit: AuditDep,
) -> AgentOut:
    """Set an agent offline, available or on a break (an agent: only themself)."""
    agent = await repo.get_agent(session, agent_id)
    if not has_permission(user.role, "agents:status:any"):
        if not has_permission(user.role, "agents:status:own"):
            raise Forbidden("requires permission agents:status:own")
        if agent.user_id != user.id:
            raise Forbidden("an agent may change only their own status")
    if not agent.is_active:
        raise Conflict(f"agent {agent_id} is inactive")
    if await store.agent(agent_id) is None:
        await store.upsert_agent(repo.agent_config(agent))
    old, new = await store.set_presence(agent_id, body.status)
    await audit.record(
        "agent.status", "agent", agent_id, before={"status": old}, after={"status": new}
    )
    await session.commit()
    await session.refresh(agent)
    return agent_out(agent, await store.agent(agent_id))
