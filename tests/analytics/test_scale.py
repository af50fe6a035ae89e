"""A million executions: EXPLAIN shows the history and dashboard queries on indexes and under
100 ms, and the CSV export streams them all in constant memory. Prints the figures (-s)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta

import psutil
import pytest
from an_support import bearer
from sqlalchemy import select, text

from core import analytics as kpi
from core.db.models import Flow, Queue
from core.repositories import analytics as repo

pytestmark = pytest.mark.slow

ROWS = 1_000_000
SPACING_S = 25  # one call every 25 s: a million calls over ~290 days
GENERATE = text(
    """
    INSERT INTO flow_executions (call_sid, workflow_id, flow_id, flow_version, carrier,
        direction, caller, called, status, started_at, ended_at, duration_s, path,
        recording_url, queue_id, queue_wait_s)
    SELECT 'm' || g, 'call-m' || g,
        CASE WHEN g % 4 = 0 THEN CAST(:other AS int) ELSE CAST(:flow AS int) END, 1,
        'exotel', 'inbound', '+9198' || lpad((g % 100000)::text, 8, '0'), '+911140000000',
        CASE WHEN g <= 20 THEN 'in_progress'
             ELSE (ARRAY['completed','completed','completed','abandoned','failed'])[1 + g % 5]
        END,
        now() - make_interval(secs => g * CAST(:spacing AS int)),
        CASE WHEN g <= 20 THEN NULL
             ELSE now() - make_interval(secs => g * CAST(:spacing AS int))
                  + make_interval(secs => g % 300)
        END,
        CASE WHEN g <= 20 THEN NULL ELSE (g % 300)::float END,
        '["welcome", "main_menu", "tech_info"]'::jsonb,
        CASE WHEN g % 10 = 0 THEN 'https://recordings.example/' || g || '.mp3' END,
        CASE WHEN g % 3 = 0 THEN CAST(:queue AS int) END,
        CASE WHEN g % 3 = 0 THEN (g % 60)::float END
    FROM generate_series(1, CAST(:rows AS int)) AS g
    """
)
QUEUE_ENTRIES = text(
    """
    INSERT INTO call_queue_entries (queue_id, execution_id, call_sid, status, enqueued_at,
        left_at, wait_s)
    SELECT queue_id, id, call_sid,
        CASE WHEN queue_wait_s < 45 THEN 'assigned' ELSE 'abandoned' END,
        started_at, started_at + make_interval(secs => queue_wait_s), queue_wait_s
    FROM flow_executions WHERE queue_id IS NOT NULL AND status <> 'in_progress'
    """
)


@pytest.fixture(scope="module")
async def million(api_url, sessionmaker) -> dict:
    async with sessionmaker.begin() as session:
        flow = await session.scalar(select(Flow.id).order_by(Flow.id).limit(1))
        other = await session.scalar(select(Flow.id).order_by(Flow.id.desc()).limit(1))
        queue = await session.scalar(select(Queue.id).order_by(Queue.id).limit(1))
        began = time.perf_counter()
        await session.execute(GENERATE, {"flow": flow, "other": other, "queue": queue,
                                         "spacing": SPACING_S, "rows": ROWS})
        await session.execute(QUEUE_ENTRIES)
    async with sessionmaker() as session:
        await session.execute(text("ANALYZE flow_executions"))
        await session.execute(text("ANALYZE call_queue_entries"))
        await session.commit()
    print(f"\ngenerated {ROWS} executions in {time.perf_counter() - began:.1f} s")
    return {"flow": flow}


async def explain(session, stmt) -> tuple[dict, float]:
    compiled = stmt.compile(dialect=session.bind.dialect)
    params = tuple(compiled.params[k] for k in compiled.positiontup)
    conn = await session.connection()
    result = await conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(compiled), params
    )
    plan = result.scalar()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return plan[0], float(plan[0]["Execution Time"])


def indexes_used(node: dict) -> set[str]:
    found = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", []):
        found |= indexes_used(child)
    return found


def seq_scans(node: dict) -> set[str]:
    found = {node["Relation Name"]} if node.get("Node Type") == "Seq Scan" else set()
    for child in node.get("Plans", []):
        found |= seq_scans(child)
    return found


async def test_history_and_dashboard_queries_use_indexes_under_100ms(million, sessionmaker):
    now = datetime.now(UTC)
    midnight = kpi.midnight(now, kpi.zone(None))
    some_day = now - timedelta(days=100)
    hist = dict(start=None, end=None, flow_id=None, status=None, caller=None)
    cursor = (now - timedelta(days=150), 10**9)
    cases = {
        "history, first page": (repo.history_select(**hist), None),
        "history, page 150 days deep": (repo.history_select(**hist), cursor),
        "history, by flow": (repo.history_select(**{**hist, "flow_id": million["flow"]}), None),
        "history, by status": (repo.history_select(**{**hist, "status": "failed"}), None),
        "history, by caller": (repo.history_select(**{**hist, "caller": "+919800012345"}), None),
        "history, one day": (
            repo.history_select(**{**hist, "start": some_day,
                                   "end": some_day + timedelta(days=1)}), None),
    }
    figures: dict[str, float] = {}
    async with sessionmaker() as session:
        for name, (stmt, after) in cases.items():
            if after is not None:
                from sqlalchemy import tuple_

                from core.db.models import FlowExecution as E

                stmt = stmt.where(tuple_(E.started_at, E.id) < tuple_(*after))
            plan, ms = await explain(session, stmt.limit(51))
            figures[name] = ms
            assert "flow_executions" not in seq_scans(plan["Plan"]), (name, plan)
            assert any(i.startswith("ix_flow_executions") for i in indexes_used(plan["Plan"]))
            assert ms < 100, (name, ms)
        from sqlalchemy import func

        from core.db.models import CallQueueEntry as Q
        from core.db.models import FlowExecution as E

        dash = {
            "dashboard, today's calls": select(
                func.count(), func.avg(E.duration_s)).where(E.started_at >= midnight),
            "dashboard, active calls": select(func.count()).select_from(E).where(
                E.status == "in_progress"),
        }
        for name, stmt in dash.items():
            plan, ms = await explain(session, stmt)
            figures[name] = ms
            assert "flow_executions" not in seq_scans(plan["Plan"]), (name, plan)
            assert ms < 100, (name, ms)
        # The whole dashboard's SQL, as the endpoint runs it.
        began = time.perf_counter()
        await repo.call_figures(session, midnight)
        await repo.queue_figures(session, midnight)
        await repo.top_flows(session, midnight)
        await repo.active_calls(session)
        figures["dashboard, all SQL"] = (time.perf_counter() - began) * 1000
        qplan, ms = await explain(session, select(func.count()).select_from(Q).where(
            Q.queue_id.in_(select(Queue.id).scalar_subquery()), Q.enqueued_at >= midnight))
        figures["dashboard, queue entries today"] = ms
        assert "call_queue_entries" not in seq_scans(qplan["Plan"]), qplan
    print("\nEXPLAIN ANALYZE execution times (ms) on 1M executions:")
    for name, ms in figures.items():
        print(f"  {name:38s} {ms:8.2f}")


async def test_endpoints_answer_fast_on_a_million(million, http, tokens) -> None:
    h = bearer(tokens["manager"])
    timings: dict[str, float] = {}
    for name, url, params in [
        ("dashboard", "/api/analytics/dashboard", {}),
        ("history", "/api/analytics/calls/history", {"limit": 50}),
        ("history by status", "/api/analytics/calls/history", {"status": "abandoned"}),
    ]:
        await http.get(url, params=params, headers=h)  # warm
        began = time.perf_counter()
        r = await http.get(url, params=params, headers=h)
        timings[name] = (time.perf_counter() - began) * 1000
        assert r.status_code == 200, r.text
    r = await http.get("/api/analytics/calls/history", params={"limit": 200}, headers=h)
    page = r.json()
    r2 = await http.get("/api/analytics/calls/history",
                        params={"limit": 200, "cursor": page["nextCursor"]}, headers=h)
    assert r2.json()["items"][0]["startedAt"] <= page["items"][-1]["startedAt"]
    print("\nendpoint wall times (ms, in-process server, shared machine):", {
        k: round(v, 1) for k, v in timings.items()})


async def test_a_million_row_export_streams_in_constant_memory(million, http, tokens) -> None:
    today = date.today()
    params = {"from": (today - timedelta(days=364)).isoformat(),
              "to": (today + timedelta(days=1)).isoformat()}
    proc = psutil.Process()
    base_rss = proc.memory_info().rss
    peak = base_rss
    lines = 0
    first_byte_s = None
    began = time.perf_counter()
    async with http.stream("GET", "/api/analytics/calls/export/csv", params=params,
                           headers=bearer(tokens["manager"]), timeout=600) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_bytes():
            if first_byte_s is None:
                first_byte_s = time.perf_counter() - began
            lines += chunk.count(b"\n")
            if lines % 50_000 < 2_000:
                peak = max(peak, proc.memory_info().rss)
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - began
    peak = max(peak, proc.memory_info().rss)
    rows = lines - 1
    assert rows == ROWS
    growth_mb = (peak - base_rss) / 2**20
    print(f"\nexport: {rows} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s; first byte "
          f"after {first_byte_s:.2f} s; RSS growth {growth_mb:.1f} MB (server and client "
          f"share this process)")
    assert first_byte_s is not None and first_byte_s < 2.0
    # A buffered export of a million rows would be hundreds of MB.
    assert growth_mb < 60
