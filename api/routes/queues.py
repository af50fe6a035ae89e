"""Queues REST: configuration, live entries and statistics.

Reading needs `queues:view`, changing `queues:manage`. A queue with callers waiting (or callback
requests keeping their place) cannot be deleted: the 409 says how many. Statistics mix the live
state in Redis (size, longest wait, agents) with the day's history in `call_queue_entries`.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, model_validator

from api.deps import AuditDep, PagingDep, RequirePermission, SessionDep
from api.routes.agents import StoreDep
from core.db.models import Queue
from core.errors import Conflict, InvalidInput
from core.phone import mask
from core.repositories import routing as repo
from core.routing.ewt import average_handle_s, erlang_c_wait_s, position_wait_s
from core.schemas import CamelModel, ErrorOut, InputModel, Page

router = APIRouter(prefix="/api/queues", tags=["queues"])

QueueId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Viewer = RequirePermission("queues:view")
Manager = RequirePermission("queues:manage")
SkillName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Proficiency = Annotated[int, Field(ge=1, le=5)]
Strategy = Literal["sequential", "round_robin", "longest_idle", "skills_based", "load_balanced"]

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
_ONE: dict[int | str, dict[str, Any]] = {**_ERRORS, 404: {"model": ErrorOut}}
_CONFLICT: dict[int | str, dict[str, Any]] = {**_ONE, 409: {"model": ErrorOut}}


class WideningStep(InputModel):
    after_s: float = Field(ge=0, le=14400, description="seconds waited before this step")
    relax_by: int = Field(default=1, ge=0, le=4, description="levels off every minimum")
    drop_optional: bool = False


class Overflow(InputModel):
    queue_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="move callers here on full or timeout (else the node's full/timeout port)",
    )


class QueueIn(InputModel):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=2000)
    strategy: Strategy = "longest_idle"
    required_skills: dict[SkillName, Proficiency] = Field(default_factory=dict, max_length=20)
    optional_skills: dict[SkillName, Proficiency] = Field(default_factory=dict, max_length=20)
    widening: list[WideningStep] = Field(default_factory=list, max_length=10)
    priority: int = Field(default=0, ge=0, le=100)
    max_size: int = Field(default=100, ge=1, le=10000)
    max_wait_s: int = Field(default=600, ge=10, le=14400)
    aging_s: int = Field(
        default=300,
        ge=1,
        le=14400,
        description="a call waiting this long is served before higher priorities (no starvation)",
    )
    hold_music_url: str | None = Field(default=None, max_length=1024, pattern=r"^https?://\S+$")
    hold_message: str | None = Field(default=None, max_length=2000)
    announce_interval_s: int = Field(default=30, ge=10, le=600)
    announce_position: bool = True
    announce_wait_time: bool = True
    service_level_s: int = Field(default=20, ge=1, le=3600)
    overflow: Overflow = Field(default_factory=Overflow)
    callback_enabled: bool = False

    @model_validator(mode="after")
    def _check(self) -> QueueIn:
        for step in self.widening:
            if step.relax_by == 0 and not step.drop_optional:
                raise ValueError("a widening step must relax a level or drop optional skills")
        return self


class QueueOut(CamelModel):
    id: int
    name: str
    description: str | None
    strategy: str
    required_skills: dict[str, int]
    optional_skills: dict[str, int]
    widening: list[dict[str, Any]]
    priority: int
    max_size: int
    max_wait_s: int
    aging_s: int
    hold_music_url: str | None
    hold_message: str | None
    announce_interval_s: int
    announce_position: bool
    announce_wait_time: bool
    service_level_s: int
    overflow: dict[str, Any]
    callback_enabled: bool
    waiting: int = 0
    created_at: datetime
    updated_at: datetime


class LiveEntryOut(CamelModel):
    call_sid: str
    position: int
    priority: int
    kind: str  # call | callback
    caller: str
    waited_s: float
    callback_id: int | None


class EntryOut(CamelModel):
    id: int
    call_sid: str
    caller: str | None
    priority: int
    status: str
    position_at_entry: int | None
    enqueued_at: datetime
    left_at: datetime | None
    wait_s: float | None
    agent_id: int | None


class EntriesOut(CamelModel):
    live: list[LiveEntryOut] = Field(description="waiting now, in service order")
    history: Page[EntryOut]


class StatsOut(CamelModel):
    queue_id: int
    size: int
    longest_wait_s: float
    callbacks_waiting: int
    agents_total: int = Field(description="agents whose skills fit the queue")
    agents_staffed: int = Field(description="of those, signed in (not offline or on a break)")
    agents_available: int = Field(description="free to take a call now")
    since: datetime
    offered: int
    answered: int
    abandoned: int
    timed_out: int
    overflowed: int
    callbacks: int
    average_wait_s: float | None
    max_wait_s: float | None
    service_level: float | None = Field(description="answered within serviceLevelS / offered")
    abandonment_rate: float | None
    average_handle_s: float
    expected_wait_new_caller_s: float | None = Field(description="Erlang C; null if overloaded")
    expected_wait_last_in_line_s: float | None


def queue_out(queue: Queue, waiting: int = 0) -> QueueOut:
    settings = queue.settings or {}
    return QueueOut(
        id=queue.id,
        name=queue.name,
        description=queue.description,
        strategy=queue.strategy,
        required_skills=queue.required_skills or {},
        optional_skills=settings.get("optionalSkills") or {},
        widening=settings.get("widening") or [],
        priority=queue.priority,
        max_size=queue.max_size,
        max_wait_s=queue.max_wait_s,
        aging_s=int(settings.get("agingS", 300)),
        hold_music_url=queue.hold_music_url,
        hold_message=queue.hold_message,
        announce_interval_s=queue.announce_interval_s,
        announce_position=queue.announce_position,
        announce_wait_time=queue.announce_wait_time,
        service_level_s=queue.service_level_s,
        overflow=queue.overflow or {},
        callback_enabled=queue.callback_enabled,
        waiting=waiting,
        created_at=queue.created_at,
        updated_at=queue.updated_at,
    )


async def _apply(session: SessionDep, queue: Queue, body: QueueIn) -> None:
    target = body.overflow.queue_id
    if target is not None:
        if queue.id is not None and target == queue.id:
            raise InvalidInput("overflow.queueId cannot be the queue itself")
        await repo.get_queue(session, target)  # 404 for an unknown overflow queue
    queue.name = body.name
    queue.description = body.description
    queue.strategy = body.strategy
    queue.required_skills = dict(body.required_skills)
    queue.priority = body.priority
    queue.max_size = body.max_size
    queue.max_wait_s = body.max_wait_s
    queue.hold_music_url = body.hold_music_url
    queue.hold_message = body.hold_message
    queue.announce_interval_s = body.announce_interval_s
    queue.announce_position = body.announce_position
    queue.announce_wait_time = body.announce_wait_time
    queue.service_level_s = body.service_level_s
    queue.overflow = {"queueId": target} if target is not None else {}
    queue.callback_enabled = body.callback_enabled
    queue.settings = {
        **(queue.settings or {}),
        "optionalSkills": dict(body.optional_skills),
        "widening": [w.model_dump(by_alias=True) for w in body.widening],
        "agingS": body.aging_s,
    }


@router.get("", response_model=Page[QueueOut], responses=_ERRORS)
async def list_queues(
    _: Viewer, session: SessionDep, store: StoreDep, paging: PagingDep
) -> Page[QueueOut]:
    """List queues with how many callers wait in each."""
    rows, total = await repo.list_queues(session, offset=paging.offset, limit=paging.limit)
    return Page[QueueOut](
        items=[queue_out(q, await store.queue_size(q.id)) for q in rows],
        total=total,
        offset=paging.offset,
        limit=paging.limit,
    )


@router.post("", status_code=201, response_model=QueueOut, responses=_CONFLICT)
async def create_queue(
    body: QueueIn, _: Manager, session: SessionDep, store: StoreDep, audit: AuditDep
) -> QueueOut:
    """Create a queue."""
    queue = Queue()
    await _apply(session, queue, body)
    session.add(queue)
    await repo.flush_or_conflict(session, f"a queue named {body.name!r} exists")
    await audit.record("queue.create", "queue", queue.id, after=repo.queue_summary(queue))
    await session.commit()
    await session.refresh(queue)
    await store.set_queue(repo.queue_routing(queue))
    return queue_out(queue)


@router.get("/{queue_id}", response_model=QueueOut, responses=_ONE)
async def get_queue(queue_id: QueueId, _: Viewer, session: SessionDep, store: StoreDep) -> QueueOut:
    """One queue."""
    queue = await repo.get_queue(session, queue_id)
    return queue_out(queue, await store.queue_size(queue_id))


@router.put("/{queue_id}", response_model=QueueOut, responses=_CONFLICT)
async def update_queue(
    queue_id: QueueId,
    body: QueueIn,
    _: Manager,
    session: SessionDep,
    store: StoreDep,
    audit: AuditDep,
) -> QueueOut:
    """Replace a queue's configuration (callers waiting keep their places)."""
    queue = await repo.get_queue(session, queue_id)
    before = repo.queue_summary(queue)
    await _apply(session, queue, body)
    await repo.flush_or_conflict(session, f"a queue named {body.name!r} exists")
    await audit.record(
        "queue.update", "queue", queue_id, before=before, after=repo.queue_summary(queue)
    )
    await session.commit()
    await session.refresh(queue)
    await store.set_queue(repo.queue_routing(queue))
    await store.dispatch(queue_id)  # wider skills may fit a free agent now
    return queue_out(queue, await store.queue_size(queue_id))


@router.delete("/{queue_id}", status_code=204, response_class=Response, responses=_CONFLICT)
async def delete_queue(
    queue_id: QueueId, _: Manager, session: SessionDep, store: StoreDep, audit: AuditDep
) -> Response:
    """Delete a queue; refused while callers or callback requests wait in it."""
    queue = await repo.get_queue(session, queue_id)
    waiting = await store.queue_size(queue_id)
    if waiting:
        raise Conflict(
            f"queue {queue_id} has {waiting} caller(s) or callback request(s) waiting: "
            "let it drain (or point the flow elsewhere) before deleting it"
        )
    before = repo.queue_summary(queue)
    queue.deleted_at = datetime.now(UTC)
    await audit.record("queue.delete", "queue", queue_id, before=before, after={"deleted": True})
    await session.commit()
    await store.remove_queue(queue_id)
    return Response(status_code=204)


@router.get("/{queue_id}/entries", response_model=EntriesOut, responses=_ONE)
async def list_queue_entries(
    queue_id: QueueId,
    _: Viewer,
    session: SessionDep,
    store: StoreDep,
    paging: PagingDep,
    status: Annotated[
        Literal[
            "waiting",
            "assigned",
            "abandoned",
            "timed_out",
            "overflowed",
            "callback_requested",
            "called_back",
        ]
        | None,
        Query(description="history filter"),
    ] = None,
) -> EntriesOut:
    """Who waits now (in service order) and the queue's history, newest first."""
    await repo.get_queue(session, queue_id)
    now_ms = int(time.time() * 1000)
    live = [
        LiveEntryOut(
            call_sid=e.call_sid,
            position=e.position,
            priority=e.priority,
            kind=e.kind,
            caller=mask(e.caller) if e.caller else "",
            waited_s=max(0.0, (now_ms - e.arrival_ms) / 1000),
            callback_id=e.callback_id,
        )
        for e in await store.entries(queue_id)
    ]
    rows, total = await repo.entry_history(
        session, queue_id, offset=paging.offset, limit=paging.limit, status=status
    )
    return EntriesOut(
        live=live,
        history=Page[EntryOut](
            items=[EntryOut.model_validate(r) for r in rows],
            total=total,
            offset=paging.offset,
            limit=paging.limit,
        ),
    )


@router.get("/{queue_id}/stats", response_model=StatsOut, responses=_ONE)
async def get_queue_stats(
    queue_id: QueueId,
    _: Viewer,
    session: SessionDep,
    store: StoreDep,
    since_hours: Annotated[float, Query(alias="sinceHours", gt=0, le=24 * 31)] = 24,
) -> StatsOut:
    """Live size, waits, service level, abandonment and agents of a queue."""
    queue = await repo.get_queue(session, queue_id)
    routing = repo.queue_routing(queue)
    await store.sweep()
    entries = await store.entries(queue_id)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    longest = max(((now_ms - e.arrival_ms) / 1000 for e in entries), default=0.0)
    req = routing.requirements(0)
    fitting = [a for a in await store.snapshots() if req.admits(a)]
    staffed = [a for a in fitting if a.presence == "available"]
    free = [a for a in staffed if a.free(now_ms)]
    since = now - timedelta(hours=since_hours)
    window = await repo.window_stats(
        session, queue_id, since=since, service_level_s=queue.service_level_s
    )
    offered = int(window["offered"])
    aht = average_handle_s(await store.recent_handle_s(queue_id))
    arrivals_per_s = window["arrivals_last_hour"] / 3600
    new_wait = erlang_c_wait_s(len(staffed), arrivals_per_s, aht)
    last = position_wait_s(len(entries), len(staffed), aht, len(free)) if entries else 0.0
    return StatsOut(
        queue_id=queue_id,
        size=len(entries),
        longest_wait_s=round(longest, 1),
        callbacks_waiting=sum(1 for e in entries if e.kind == "callback"),
        agents_total=len(fitting),
        agents_staffed=len(staffed),
        agents_available=len(free),
        since=since,
        offered=offered,
        answered=int(window["answered"]),
        abandoned=int(window["abandoned"]),
        timed_out=int(window["timed_out"]),
        overflowed=int(window["overflowed"]),
        callbacks=int(window["callbacks"]),
        average_wait_s=_round(window["avg_wait_s"]),
        max_wait_s=_round(window["max_wait_s"]),
        service_level=round(window["answered_in_sl"] / offered, 4) if offered else None,
        abandonment_rate=round(window["abandoned"] / offered, 4) if offered else None,
        average_handle_s=round(aht, 1),
        expected_wait_new_caller_s=None if math.isinf(new_wait) else round(new_wait, 1),
        expected_wait_last_in_line_s=_round(last),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
