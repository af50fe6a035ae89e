"""Analytics: dashboard KPIs, call metrics, call history (keyset), CSV export, flow and agent
reports. Manager and above. Every figure is defined in docs/metrics.md; the short form is in
each field's description below.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import RequirePermission, SessionDep
from api.routes.agents import StoreDep
from core import analytics as kpi
from core.db.models import EXECUTION_STATUSES, User
from core.errors import NotFound
from core.permissions import role_at_least
from core.phone import to_e164
from core.repositories import analytics as repo
from core.routing.store import RoutingStore
from core.schemas import CamelModel, ErrorOut

router = APIRouter(prefix="/api/analytics", tags=["analytics"])

Viewer = RequirePermission("analytics:view")
Exporter = RequirePermission("analytics:export")

_BAD = {400: {"model": ErrorOut}, 422: {"model": ErrorOut}}
_ONE = {**_BAD, 404: {"model": ErrorOut}}

TzQuery = Annotated[
    str,
    Query(description="IANA time zone for 'today', bare dates and buckets", max_length=64),
]
FromQuery = Annotated[
    str | None,
    Query(alias="from", description="ISO-8601 date or date-time (a bare date: its midnight)",
          max_length=40),
]
ToQuery = Annotated[
    str | None,
    Query(alias="to", description="ISO-8601 date or date-time, exclusive (a bare date: the "
          "whole day is included)", max_length=40),
]


def sees_numbers(user: User) -> bool:
    """Admins see callers' numbers in full; lower roles see them masked."""
    return role_at_least(user.role, "admin")


def _round(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


# --- dashboard -----------------------------------------------------------------------------


class TopFlow(CamelModel):
    flow_id: int | None
    flow_name: str
    call_count: int


class DashboardOut(CamelModel):
    active_calls: int = Field(description="calls in progress now (record not yet finalised)")
    calls_in_queue: int = Field(description="callers waiting in any queue now")
    available_agents: int = Field(description="agents available and free to take a call now")
    total_agents: int = Field(description="active agents known to routing")
    calls_today: int = Field(description="calls started since midnight in `timezone`")
    avg_call_duration: float = Field(
        description="mean duration (s) of today's ended calls; 0 when none ended"
    )
    success_rate: float = Field(
        description="completed / ended calls today, in %; 0 when none ended"
    )
    top_flows: list[TopFlow] = Field(description="the 5 flows with most calls today")
    service_level: float | None = Field(
        description="% of today's offered queue calls answered within their queue's service "
        "level threshold (short abandons < 5 s excluded); null when none offered"
    )
    abandon_rate: float | None = Field(
        description="% of today's offered queue calls abandoned in the queue; null when none"
    )
    avg_speed_of_answer: float | None = Field(
        description="mean queue wait (s) of today's answered queue calls; null when none"
    )
    longest_wait: float = Field(description="longest current wait (s) of a caller in a queue")
    timezone: str
    since: datetime
    as_of: datetime


async def live_routing(store: RoutingStore, now_ms: int, *, rebuild: bool = True) -> dict[str, Any]:
    """Queue and agent figures from Redis (routing's live state); with `rebuild`, a Redis that
    lost its data is rebuilt from PostgreSQL first (as routing itself would)."""
    redis: Redis = store.redis
    queue_ids = await store.queue_ids()
    size = 0
    oldest: float | None = None
    per_queue: dict[int, tuple[int, float]] = {}
    if queue_ids:
        async with redis.pipeline(transaction=False) as pipe:
            for q in queue_ids:
                pipe.zcard(f"queue:{q}:wait")
                pipe.zrange(f"queue:{q}:arr", 0, 0, withscores=True)
            raw = await pipe.execute()
        for i, q in enumerate(queue_ids):
            n = int(raw[2 * i])
            size += n
            head = raw[2 * i + 1]
            wait = 0.0
            if head:
                arrival = float(head[0][1])
                oldest = arrival if oldest is None else min(oldest, arrival)
                wait = round(max(0.0, (now_ms - arrival) / 1000), 1)
            per_queue[q] = (n, wait)
    if rebuild or await store.loaded():
        snaps = await store.snapshots()
    else:
        snaps = []
    available = sum(1 for s in snaps if s.status == "available" and s.free(now_ms))
    return {
        "calls_in_queue": size,
        "longest_wait": round(max(0.0, (now_ms - oldest) / 1000), 1) if oldest else 0.0,
        "available_agents": available,
        "total_agents": len(snaps),
        "agents": snaps,
        "queues": per_queue,
    }


async def dashboard(
    session: AsyncSession,
    store: RoutingStore,
    tz_name: str,
    now: datetime | None = None,
    *,
    rebuild: bool = True,
) -> DashboardOut:
    tz = kpi.zone(tz_name)
    now = now or datetime.now(UTC)
    since = kpi.midnight(now, tz)
    calls = await repo.call_figures(session, since)
    queues = await repo.queue_figures(session, since)
    top = await repo.top_flows(session, since)
    active = await repo.active_calls(session)
    live = await live_routing(store, int(now.timestamp() * 1000), rebuild=rebuild)
    ended = calls["completed"] + calls["abandoned"] + calls["failed"]
    sl_base = queues["offered"] - queues["short_abandoned"]
    return DashboardOut(
        active_calls=active,
        calls_in_queue=live["calls_in_queue"],
        available_agents=live["available_agents"],
        total_agents=live["total_agents"],
        calls_today=calls["calls"],
        avg_call_duration=_round(calls["avg_duration_s"]) or 0.0,
        success_rate=_pct(calls["completed"], ended) or 0.0,
        top_flows=[TopFlow(**t) for t in top],
        service_level=_pct(queues["answered_in_sl"], sl_base),
        abandon_rate=_pct(queues["abandoned"], queues["offered"]),
        avg_speed_of_answer=_round(queues["asa_s"]),
        longest_wait=live["longest_wait"],
        timezone=tz.key,
        since=since,
        as_of=now,
    )


@router.get("/dashboard", response_model=DashboardOut, responses=_BAD)
async def get_dashboard(
    _: Viewer, session: SessionDep, store: StoreDep, tz: TzQuery = kpi.BUSINESS_TZ
) -> DashboardOut:
    """Real-time contact-centre KPIs (today = since midnight in the business time zone)."""
    return await dashboard(session, store, tz)


# --- call metrics --------------------------------------------------------------------------


class MetricsPoint(CamelModel):
    bucket: datetime = Field(description="start of the hour/day, local to `timezone`")
    calls: int
    completed: int
    failed: int
    abandoned: int
    in_progress: int
    avg_duration: float | None = Field(description="mean duration (s) of ended calls")
    service_level: float | None = Field(description="% answered within threshold")


class MetricsTotals(CamelModel):
    calls: int
    completed: int
    failed: int
    abandoned: int
    in_progress: int
    avg_duration: float | None
    success_rate: float | None = Field(description="completed / ended, %")
    service_level: float | None
    abandon_rate: float | None
    avg_speed_of_answer: float | None


class MetricsOut(CamelModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    interval: Literal["hour", "day"]
    timezone: str
    totals: MetricsTotals
    series: list[MetricsPoint]


@router.get("/calls/metrics", response_model=MetricsOut, responses=_BAD)
async def get_call_metrics(
    _: Viewer,
    session: SessionDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    interval: Annotated[Literal["hour", "day"], Query()] = "day",
    tz: TzQuery = kpi.BUSINESS_TZ,
) -> MetricsOut:
    """Call totals and an hourly/daily series for charts (default: the last 7 days)."""
    zone = kpi.zone(tz)
    max_span = kpi.MAX_HOURLY_RANGE if interval == "hour" else kpi.MAX_REPORT_RANGE
    rng = kpi.parse_range(from_, to, zone, default_span=timedelta(days=7), max_span=max_span)
    assert rng.start is not None and rng.end is not None
    rows = {r["bucket"]: r for r in await repo.metric_series(
        session, rng.start, rng.end, interval, zone.key)}
    qrows = {r["bucket"]: r for r in await repo.queue_series(
        session, rng.start, rng.end, interval, zone.key)}
    series = []
    for start in kpi.buckets(rng, interval, zone):
        key = start.replace(tzinfo=None)  # date_trunc of a local timestamp: naive wall clock
        r = rows.get(key, {})
        q = qrows.get(key, {})
        series.append(
            MetricsPoint(
                bucket=start,
                calls=r.get("calls", 0),
                completed=r.get("completed", 0),
                failed=r.get("failed", 0),
                abandoned=r.get("abandoned", 0),
                in_progress=r.get("in_progress", 0),
                avg_duration=_round(r.get("avg_duration_s")),
                service_level=_pct(
                    q.get("answered_in_sl", 0), q.get("offered", 0) - q.get("short_abandoned", 0)
                ),
            )
        )
    calls = await repo.call_figures(session, rng.start, rng.end)
    queues = await repo.queue_figures(session, rng.start, rng.end)
    ended = calls["completed"] + calls["abandoned"] + calls["failed"]
    return MetricsOut(
        start=rng.start,
        end=rng.end,
        interval=interval,
        timezone=zone.key,
        totals=MetricsTotals(
            calls=calls["calls"],
            completed=calls["completed"],
            failed=calls["failed"],
            abandoned=calls["abandoned"],
            in_progress=calls["in_progress"],
            avg_duration=_round(calls["avg_duration_s"]),
            success_rate=_pct(calls["completed"], ended),
            service_level=_pct(
                queues["answered_in_sl"], queues["offered"] - queues["short_abandoned"]
            ),
            abandon_rate=_pct(queues["abandoned"], queues["offered"]),
            avg_speed_of_answer=_round(queues["asa_s"]),
        ),
        series=series,
    )


# --- history -------------------------------------------------------------------------------

StatusQuery = Annotated[
    Literal["in_progress", "completed", "failed", "abandoned"] | None, Query()
]
FlowIdQuery = Annotated[int | None, Query(alias="flowId", ge=1, le=2**31 - 1)]
CallerQuery = Annotated[
    str | None, Query(description="the caller's number (any format; matched as E.164)",
                      max_length=32)
]
assert set(EXECUTION_STATUSES) == {"in_progress", "completed", "failed", "abandoned"}


class HistoryItem(CamelModel):
    id: int
    call_sid: str
    flow_id: int | None
    flow_name: str | None
    flow_version: int | None
    caller: str | None = Field(description="masked for roles below admin")
    called: str | None
    carrier: str
    status: str
    end_reason: str | None
    started_at: datetime
    ended_at: datetime | None
    duration: float | None = Field(description="seconds")
    path: list[str]
    path_summary: str
    agent_id: int | None
    agent_name: str | None
    queue_id: int | None
    queue_name: str | None
    queue_wait: float | None = Field(description="seconds waited in the queue")
    recording_url: str | None


class HistoryPage(CamelModel):
    items: list[HistoryItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
    limit: int


def _summary(path: list[str], keep: int = 8) -> str:
    if len(path) <= keep:
        return " > ".join(path)
    return " > ".join([*path[: keep - 2], "…", *path[-1:]]) + f" ({len(path)} steps)"


def _filters(
    rng: kpi.Range, flow_id: int | None, status: str | None, caller: str | None
) -> dict[str, Any]:
    return {"from": rng.start, "to": rng.end, "flowId": flow_id, "status": status,
            "caller": caller}


def _caller_filter(caller: str | None) -> str | None:
    if caller is None or caller == "":
        return None
    e164 = to_e164(caller)
    if e164 is None:
        from core.errors import InvalidInput

        raise InvalidInput("caller: not a phone number")
    return e164


async def _check_flow(session: AsyncSession, flow_id: int | None) -> None:
    if flow_id is not None and await repo.flow_exists(session, flow_id) is None:
        raise NotFound(f"flowId: flow {flow_id} does not exist")


def _item(row: Any, reveal: bool) -> HistoryItem:
    path = [str(p) for p in (row.path or [])]
    return HistoryItem(
        id=row.id,
        call_sid=row.call_sid,
        flow_id=row.flow_id,
        flow_name=row.flow_name,
        flow_version=row.flow_version,
        caller=kpi.caller_for(reveal, row.caller),
        called=row.called,
        carrier=row.carrier,
        status=row.status,
        end_reason=row.end_reason,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration=_round(row.duration_s),
        path=path,
        path_summary=_summary(path),
        agent_id=row.agent_id,
        agent_name=row.agent_name,
        queue_id=row.queue_id,
        queue_name=row.queue_name,
        queue_wait=_round(row.queue_wait_s),
        recording_url=row.recording_url,
    )


@router.get("/calls/history", response_model=HistoryPage, responses=_ONE)
async def list_call_history(
    user: Viewer,
    session: SessionDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    flow_id: FlowIdQuery = None,
    status: StatusQuery = None,
    caller: CallerQuery = None,
    limit: Annotated[int, Query(ge=1, le=kpi.MAX_HISTORY_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    tz: TzQuery = kpi.BUSINESS_TZ,
) -> HistoryPage:
    """Calls newest first, filtered, in keyset pages (stable while new calls arrive)."""
    rng = kpi.parse_range(from_, to, kpi.zone(tz), max_span=None)
    number = _caller_filter(caller)
    await _check_flow(session, flow_id)
    fingerprint = kpi.query_fingerprint(_filters(rng, flow_id, status, number))
    after = kpi.decode_cursor(cursor, fingerprint) if cursor else None
    stmt = repo.history_select(
        start=rng.start, end=rng.end, flow_id=flow_id, status=status, caller=number
    )
    rows = await repo.history_page(session, stmt, after=after, limit=limit)
    more = len(rows) > limit
    rows = rows[:limit]
    reveal = sees_numbers(user)
    next_cursor = (
        kpi.encode_cursor(rows[-1].started_at, rows[-1].id, fingerprint) if more else None
    )
    return HistoryPage(items=[_item(r, reveal) for r in rows], next_cursor=next_cursor,
                       limit=limit)


# --- CSV export ----------------------------------------------------------------------------

CSV_COLUMNS = (
    "call_sid", "started_at", "ended_at", "duration_s", "status", "end_reason", "flow_id",
    "flow_name", "flow_version", "caller", "called", "carrier", "agent", "queue",
    "queue_wait_s", "path", "recording_url",
)


def csv_cells(row: Any, reveal: bool) -> list[Any]:
    path = [str(p) for p in (row.path or [])]
    cells = [
        row.call_sid,
        row.started_at.isoformat(),
        row.ended_at.isoformat() if row.ended_at else "",
        "" if row.duration_s is None else f"{row.duration_s:.1f}",
        row.status,
        row.end_reason or "",
        row.flow_id if row.flow_id is not None else "",
        row.flow_name or "",
        row.flow_version if row.flow_version is not None else "",
        kpi.caller_for(reveal, row.caller) or "",
        row.called or "",
        row.carrier,
        row.agent_name or "",
        row.queue_name or "",
        "" if row.queue_wait_s is None else f"{row.queue_wait_s:.1f}",
        " > ".join(path),
        row.recording_url or "",
    ]
    return [kpi.csv_safe(c) for c in cells]


async def csv_stream(
    sessionmaker: async_sessionmaker[AsyncSession], stmt: Any, reveal: bool
) -> AsyncIterator[bytes]:
    """Header then rows, encoded chunk by chunk from a server-side cursor (constant memory);
    a session of its own, since the request's is closed before the body streams."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield ("\ufeff" + buf.getvalue()).encode()  # BOM: Excel opens UTF-8 as UTF-8
    async with sessionmaker() as session, session.begin():
        async for chunk in repo.stream_rows(session, stmt):
            buf.seek(0)
            buf.truncate()
            writer.writerows(csv_cells(r, reveal) for r in chunk)
            yield buf.getvalue().encode()


@router.get(
    "/calls/export/csv",
    responses={**_ONE, 200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV"}},
    response_class=StreamingResponse,
)
async def export_calls_csv(
    request: Request,
    user: Exporter,
    session: SessionDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    flow_id: FlowIdQuery = None,
    status: StatusQuery = None,
    caller: CallerQuery = None,
    tz: TzQuery = kpi.BUSINESS_TZ,
) -> StreamingResponse:
    """Call history as CSV, streamed (same filters as history; default the last 30 days, at
    most a year per export)."""
    rng = kpi.parse_range(from_, to, kpi.zone(tz), default_span=timedelta(days=30),
                          max_span=kpi.MAX_REPORT_RANGE)
    await _check_flow(session, flow_id)
    stmt = repo.history_select(
        start=rng.start, end=rng.end, flow_id=flow_id, status=status,
        caller=_caller_filter(caller),
    )
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return StreamingResponse(
        csv_stream(request.app.state.sessionmaker, stmt, sees_numbers(user)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.csv"'},
    )


# --- flow analytics ------------------------------------------------------------------------


class TopNode(CamelModel):
    node_id: str
    node_name: str | None
    node_type: str
    visit_count: int = Field(description="visits (a node visited twice by a call counts twice)")
    calls_reached: int = Field(description="distinct calls that visited the node")
    drop_offs: int = Field(description="abandoned calls whose last node was this one")
    drop_off_rate: float | None = Field(description="dropOffs / callsReached, %")


class MenuChoice(CamelModel):
    choice: str = Field(description="digit pressed (the port taken), timeout/invalid, or "
                        "'(hung up)'")
    count: int
    share: float = Field(description="% of the menu's visits")


class MenuOut(CamelModel):
    node_id: str
    node_name: str | None
    visits: int
    choices: list[MenuChoice]


class FlowAnalyticsOut(CamelModel):
    flow_id: int
    flow_name: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    total_executions: int
    completed: int
    failed: int
    abandoned: int
    in_progress: int
    success_rate: float = Field(description="completed / ended, %; 0 with no ended calls")
    average_duration: float = Field(description="mean duration (s) of ended calls")
    top_nodes: list[TopNode] = Field(description="nodes by visits, most first (every node)")
    drop_off: dict[str, int] = Field(description="node id → abandoned calls that ended there")
    menu_choices: list[MenuOut]


@router.get("/flows/{flow_id}/analytics", response_model=FlowAnalyticsOut, responses=_ONE)
async def get_flow_analytics(
    flow_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    _: Viewer,
    session: SessionDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    tz: TzQuery = kpi.BUSINESS_TZ,
) -> FlowAnalyticsOut:
    """A flow's outcomes, node visits, drop-off per node and menu choices (default 30 days)."""
    name = await repo.flow_exists(session, flow_id)
    if name is None:
        raise NotFound(f"flow {flow_id} does not exist")
    rng = kpi.parse_range(from_, to, kpi.zone(tz), default_span=timedelta(days=30))
    assert rng.start is not None and rng.end is not None
    figs = await repo.flow_figures(session, flow_id, rng.start, rng.end)
    nodes = await repo.node_visits(session, flow_id, rng.start, rng.end)
    drops = await repo.drop_offs(session, flow_id, rng.start, rng.end)
    menus: dict[str, MenuOut] = {}
    for m in await repo.menu_choices(session, flow_id, rng.start, rng.end):
        out = menus.setdefault(
            m["node_key"], MenuOut(node_id=m["node_key"], node_name=m["node_name"], visits=0,
                                   choices=[])
        )
        out.visits += m["count"]
        out.choices.append(MenuChoice(choice=m["choice"], count=m["count"], share=0.0))
    for out in menus.values():
        for c in out.choices:
            c.share = round(100.0 * c.count / out.visits, 1) if out.visits else 0.0
        out.choices.sort(key=lambda c: (-c.count, c.choice))
    ended = figs["completed"] + figs["failed"] + figs["abandoned"]
    return FlowAnalyticsOut(
        flow_id=flow_id,
        flow_name=name,
        start=rng.start,
        end=rng.end,
        total_executions=figs["total"],
        completed=figs["completed"],
        failed=figs["failed"],
        abandoned=figs["abandoned"],
        in_progress=figs["in_progress"],
        success_rate=_pct(figs["completed"], ended) or 0.0,
        average_duration=_round(figs["avg_duration_s"]) or 0.0,
        top_nodes=[
            TopNode(
                node_id=n["node_key"],
                node_name=n["node_name"],
                node_type=n["node_type"],
                visit_count=n["visits"],
                calls_reached=n["calls"],
                drop_offs=drops.get(n["node_key"], 0),
                drop_off_rate=_pct(drops.get(n["node_key"], 0), n["calls"]),
            )
            for n in nodes
        ],
        drop_off=drops,
        menu_choices=list(menus.values()),
    )


# --- agent performance ---------------------------------------------------------------------


class AgentPerformance(CamelModel):
    agent_id: int
    agent_name: str
    team: str | None
    calls_handled: int = Field(description="calls in the range the agent talked to")
    missed: int = Field(description="transfers offered to the agent and not answered "
                        "(no-answer, busy, failed)")
    average_handle_time: float | None = Field(description="mean talk time (s) of answered "
                                              "transfers (wrap-up not included)")
    average_wrap_up: float | None = Field(description="wrap-up (s) applied after each handled "
                                          "call (the agent's configured wrap-up)")
    occupancy: float | None = Field(description="(talk + wrap-up) / time signed in as "
                                    "available, %; null when never available in the range")
    available_s: float = Field(description="seconds signed in as available in the range")
    current_status: str = Field(description="live status from routing")
    current_calls: int


class AgentPerformanceOut(CamelModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    agents: list[AgentPerformance]


@router.get("/agents/performance", response_model=AgentPerformanceOut, responses=_BAD)
async def get_agent_performance(
    _: Viewer,
    session: SessionDep,
    store: StoreDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    tz: TzQuery = kpi.BUSINESS_TZ,
) -> AgentPerformanceOut:
    """Per agent: calls handled, missed, handle and wrap-up times, occupancy, live status
    (default: today)."""
    zone = kpi.zone(tz)
    now = datetime.now(UTC)
    rng = kpi.parse_range(
        from_ or kpi.midnight(now, zone).isoformat(), to, zone, default_span=timedelta(days=1),
        now=now,
    )
    assert rng.start is not None and rng.end is not None
    handled = await repo.handled_by_agent(session, rng.start, rng.end)
    dials = await repo.transfer_attempts(session, rng.start, rng.end)
    changes: dict[str, list[tuple[datetime, str | None]]] = {}
    for agent_id, at, status in await repo.status_changes(session, rng.end):
        changes.setdefault(agent_id, []).append((at, status))
    live = {s.id: s for s in await store.snapshots()}
    out = []
    window_end = min(rng.end, now)
    for a in await repo.agents(session):
        n = handled.get(a.id, 0)
        d = dials.get(a.id, {"answered": 0, "talk_s": 0.0, "missed": 0})
        history = changes.get(str(a.id), [])
        initial = "offline"
        if not history and a.status_changed_at and a.status_changed_at <= rng.start:
            initial = a.status  # never changed through the API: its stored status held
        available_s = repo.staffed_seconds(history, rng.start, window_end, initial=initial)
        talk = d["talk_s"]
        wrap_total = n * a.wrap_up_s
        snap = live.get(a.id)
        out.append(
            AgentPerformance(
                agent_id=a.id,
                agent_name=a.name,
                team=a.team,
                calls_handled=n,
                missed=d["missed"],
                average_handle_time=_round(talk / d["answered"]) if d["answered"] else None,
                average_wrap_up=float(a.wrap_up_s) if n else None,
                occupancy=(
                    round(min(100.0, 100.0 * (talk + wrap_total) / available_s), 1)
                    if available_s > 0 else None
                ),
                available_s=round(available_s, 1),
                current_status=snap.status if snap else a.status,
                current_calls=snap.active if snap else 0,
            )
        )
    return AgentPerformanceOut(start=rng.start, end=rng.end, agents=out)
