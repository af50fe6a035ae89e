"""KPI edge cases on known rows (no calls, all abandoned, calls either side of midnight IST),
every bad input answered 4xx in the standard shape, keyset pages stable under inserts, CSV
formula injection, and the Socket.IO handshake and room checks."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import socketio
from an_support import Listener, assert_error, bearer
from sqlalchemy import select

from core.db.models import CallQueueEntry, Flow, FlowExecution, Queue
from core.flows.samples import MAIN_FLOW_NAME

IST = ZoneInfo("Asia/Kolkata")
_seq = itertools.count(1)


async def add_call(sessionmaker, *, started: datetime, status: str = "completed",
                   duration_s: float | None = 30.0, flow_name: str = MAIN_FLOW_NAME,
                   queue_wait_s: float | None = None, queue_status: str | None = None,
                   **extra) -> FlowExecution:
    async with sessionmaker.begin() as session:
        flow_id = await session.scalar(select(Flow.id).where(Flow.name == flow_name))
        sid = f"kpi{next(_seq):06d}"
        ended = started + timedelta(seconds=duration_s) if status != "in_progress" else None
        fields = {"caller": "+919811122233", "called": "+911140000000",
                  "path": ["welcome", "main_menu"], **extra}
        row = FlowExecution(
            call_sid=sid, workflow_id=f"call-{sid}", flow_id=flow_id, flow_version=1,
            status=status, started_at=started, ended_at=ended,
            duration_s=duration_s if ended else None, **fields,
        )
        session.add(row)
        await session.flush()
        if queue_status is not None:
            queue_id = await session.scalar(select(Queue.id).order_by(Queue.id).limit(1))
            session.add(CallQueueEntry(
                queue_id=queue_id, execution_id=row.id, call_sid=sid, status=queue_status,
                enqueued_at=started, left_at=started + timedelta(seconds=queue_wait_s or 0),
                wait_s=queue_wait_s,
            ))
        return row


async def dashboard(http, tokens) -> dict:
    r = await http.get("/api/analytics/dashboard", headers=bearer(tokens["manager"]))
    assert r.status_code == 200, r.text
    return r.json()


async def test_dashboard_with_no_calls(api_url, http, tokens) -> None:
    body = await dashboard(http, tokens)
    assert body["callsToday"] == 0 and body["activeCalls"] == 0
    assert body["successRate"] == 0 and body["avgCallDuration"] == 0
    assert body["topFlows"] == []
    assert body["serviceLevel"] is None and body["abandonRate"] is None
    assert body["avgSpeedOfAnswer"] is None and body["longestWait"] == 0
    assert body["totalAgents"] == 4 and body["availableAgents"] == 0  # seeded, signed out


async def test_dashboard_when_every_call_is_abandoned(api_url, http, tokens, sessionmaker):
    now = datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(IST).date(), datetime.min.time(), IST)
    if now - midnight < timedelta(minutes=5):
        pytest.skip("too close to midnight IST for 'today' to hold still")
    start = midnight + (now - midnight) / 2
    await add_call(sessionmaker, started=start, status="abandoned", duration_s=40,
                   queue_status="abandoned", queue_wait_s=30)
    await add_call(sessionmaker, started=start, status="abandoned", duration_s=10,
                   queue_status="abandoned", queue_wait_s=2)  # a short abandon
    await add_call(sessionmaker, started=start, status="abandoned", duration_s=4)
    body = await dashboard(http, tokens)
    assert body["callsToday"] == 3
    assert body["successRate"] == 0.0
    assert body["avgCallDuration"] == round((40 + 10 + 4) / 3, 1)
    assert body["abandonRate"] == 100.0  # both queue entries abandoned
    assert body["serviceLevel"] == 0.0  # the short abandon is left out of the base
    assert body["avgSpeedOfAnswer"] is None  # nobody was answered
    assert body["topFlows"] == [{"flowId": body["topFlows"][0]["flowId"],
                                 "flowName": MAIN_FLOW_NAME, "callCount": 3}]


async def test_today_starts_at_midnight_ist(api_url, http, tokens, sessionmaker) -> None:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(IST).date(), datetime.min.time(), IST)
    if now - midnight < timedelta(minutes=5):
        pytest.skip("too close to midnight IST")
    before = (await dashboard(http, tokens))["callsToday"]
    # 23:50 IST yesterday: still "today" in UTC for most of the day, but not in IST.
    await add_call(sessionmaker, started=midnight - timedelta(minutes=10), duration_s=1200)
    await add_call(sessionmaker, started=midnight + timedelta(minutes=1))
    after = await dashboard(http, tokens)
    assert after["callsToday"] == before + 1
    assert after["timezone"] == "Asia/Kolkata"


async def test_daily_buckets_split_at_midnight_ist_not_utc(api_url, http, tokens,
                                                           sessionmaker) -> None:
    night = datetime(2025, 3, 9, 23, 50, tzinfo=IST)  # 18:20 UTC on the 9th
    await add_call(sessionmaker, started=night, status="completed", duration_s=20)
    await add_call(sessionmaker, started=night + timedelta(minutes=20), status="failed",
                   duration_s=0)  # 00:10 IST on the 10th, still the 9th in UTC
    params = {"from": "2025-03-09", "to": "2025-03-10", "interval": "day"}
    ist = (await http.get("/api/analytics/calls/metrics", params=params,
                          headers=bearer(tokens["manager"]))).json()
    assert [(p["bucket"][:10], p["calls"], p["completed"], p["failed"]) for p in ist["series"]] \
        == [("2025-03-09", 1, 1, 0), ("2025-03-10", 1, 0, 1)]
    assert ist["totals"]["successRate"] == 50.0
    utc = (await http.get("/api/analytics/calls/metrics", params={**params, "tz": "UTC"},
                          headers=bearer(tokens["manager"]))).json()
    assert [(p["bucket"][:10], p["calls"]) for p in utc["series"]] == [
        ("2025-03-09", 2), ("2025-03-10", 0)]
    hourly = (await http.get(
        "/api/analytics/calls/metrics",
        params={"from": "2025-03-09T23:00:00+05:30", "to": "2025-03-10T01:00:00+05:30",
                "interval": "hour"},
        headers=bearer(tokens["manager"]))).json()
    assert [(p["bucket"], p["calls"]) for p in hourly["series"]] == [
        ("2025-03-09T23:00:00+05:30", 1), ("2025-03-10T00:00:00+05:30", 1)]


async def test_keyset_pages_stay_stable_while_calls_arrive(api_url, http, tokens,
                                                          sessionmaker) -> None:
    base = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    made = [await add_call(sessionmaker, started=base + timedelta(minutes=i)) for i in range(5)]
    # Two calls in the same instant: the id breaks the tie, so neither is lost or repeated.
    made.append(await add_call(sessionmaker, started=base + timedelta(minutes=4)))
    params = {"from": "2025-06-01", "to": "2025-06-01", "limit": 2}
    seen: list[str] = []
    r = (await http.get("/api/analytics/calls/history", params=params,
                        headers=bearer(tokens["manager"]))).json()
    seen += [i["callSid"] for i in r["items"]]
    await add_call(sessionmaker, started=base + timedelta(minutes=30))  # newer, arrives now
    while r["nextCursor"]:
        r = (await http.get("/api/analytics/calls/history",
                            params={**params, "cursor": r["nextCursor"]},
                            headers=bearer(tokens["manager"]))).json()
        seen += [i["callSid"] for i in r["items"]]
    expected = [m.call_sid for m in sorted(made, key=lambda m: (m.started_at, m.id),
                                           reverse=True)]
    assert seen == expected


async def test_bad_input_is_a_clear_4xx(api_url, http, tokens) -> None:
    h = bearer(tokens["manager"])
    hist = "/api/analytics/calls/history"
    body = assert_error(await http.get(hist, params={"from": "yesterday"}, headers=h), 400)
    assert body["detail"].startswith("from:")
    body = assert_error(await http.get(hist, params={"from": "2026-02-30"}, headers=h), 400)
    body = assert_error(await http.get(
        hist, params={"from": "2026-03-02", "to": "2026-03-01"}, headers=h), 422)
    assert "must be before" in body["detail"]
    body = assert_error(await http.get(hist, params={"limit": 500}, headers=h), 422)
    assert "limit" in body["detail"]
    body = assert_error(await http.get(hist, params={"status": "done"}, headers=h), 422)
    assert "status" in body["detail"]
    body = assert_error(await http.get(hist, params={"caller": "not-a-number"}, headers=h), 422)
    assert body["detail"].startswith("caller:")
    body = assert_error(await http.get(hist, params={"tz": "Mars/Olympus"}, headers=h), 422)
    assert body["detail"].startswith("tz:")
    # A cursor from another query (other filters), and one that is not a cursor at all.
    first = (await http.get(hist, params={"limit": 1}, headers=h)).json()
    assert first["nextCursor"]
    body = assert_error(await http.get(
        hist, params={"limit": 1, "status": "completed", "cursor": first["nextCursor"]},
        headers=h), 400)
    assert "other filters" in body["detail"]
    assert_error(await http.get(hist, params={"cursor": "garbage!"}, headers=h), 400)
    # Ranges longer than a year where nothing pages.
    year = {"from": "2024-01-01", "to": "2025-06-01"}
    body = assert_error(await http.get("/api/analytics/calls/metrics", params=year,
                                       headers=h), 422)
    assert "at most 366 days" in body["detail"]
    assert_error(await http.get("/api/analytics/calls/export/csv", params=year, headers=h), 422)
    assert_error(await http.get("/api/analytics/flows/1/analytics", params=year, headers=h), 422)
    assert_error(await http.get("/api/analytics/agents/performance", params=year,
                                headers=h), 422)
    assert_error(await http.get("/api/analytics/calls/metrics",
                                params={"interval": "minute"}, headers=h), 422)
    assert_error(await http.get("/api/analytics/flows/424242/analytics", headers=h), 404,
                 "not_found")
    assert_error(await http.get("/api/analytics/flows/abc/analytics", headers=h), 422)
    body = assert_error(await http.get(hist, params={"flowId": 424242}, headers=h), 404)
    assert body["detail"].startswith("flowId:")
    assert_error(await http.get("/api/analytics/calls/export/csv", params={"flowId": 424242},
                                headers=h), 404)
    # Roles and tokens.
    assert_error(await http.get("/api/analytics/dashboard"), 401)
    assert_error(await http.get("/api/analytics/dashboard",
                                headers=bearer(tokens["agent"])), 403)
    assert_error(await http.get("/api/calls/active", headers=bearer(tokens["agent"])), 403)
    assert_error(await http.get("/api/calls/bad%20sid", headers=h), 422)


async def test_unknown_live_call_is_404(api_url, http, tokens) -> None:
    assert_error(await http.get("/api/calls/nosuchcall123", headers=bearer(tokens["manager"])),
                 404, "not_found")


async def test_csv_cells_cannot_become_formulas(api_url, http, tokens, sessionmaker) -> None:
    async with sessionmaker.begin() as session:
        session.add(Flow(name="=HYPERLINK(\"http://evil\",\"x\")"))
    started = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
    await add_call(sessionmaker, started=started, flow_name="=HYPERLINK(\"http://evil\",\"x\")",
                   end_reason="+SUM(A1:A9)", recording_url="@cmd|' /C calc'!A0",
                   called="-2+3", direction="inbound")
    await add_call(sessionmaker, started=started + timedelta(seconds=1),
                   end_reason="\t=1+1", recording_url="\r=2+2")
    r = await http.get("/api/analytics/calls/export/csv",
                       params={"from": "2025-07-01", "to": "2025-07-01"},
                       headers=bearer(tokens["admin"]))
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM for Excel
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    assert len(rows) == 2
    evil, tabbed = rows[1], rows[0]  # newest first
    assert evil["flow_name"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert evil["end_reason"] == "'+SUM(A1:A9)"
    assert evil["recording_url"] == "'@cmd|' /C calc'!A0"
    assert evil["called"] == "'-2+3"
    assert evil["caller"] == "'+919811122233"  # admin: the full number, still neutralised
    assert tabbed["end_reason"] == "'\t=1+1" and tabbed["recording_url"] == "'\r=2+2"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


async def test_socket_io_refuses_without_a_valid_token(api_url, tokens) -> None:
    for token in (None, "not-a-jwt"):
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(api_url, auth={"token": token} if token else None,
                                 transports=["websocket"], wait_timeout=5)
    listener = Listener()
    await listener.connect(api_url, tokens["manager"])
    try:
        assert (await listener.join("flow:424242"))["error"] == "not_found"
        assert (await listener.join("analytics"))["error"] == "invalid_room"
        assert (await listener.join("flow:1; drop"))["error"] == "invalid_room"
        assert len(listener.got["room:error"]) == 3
    finally:
        await listener.close()


def test_fast_mask_matches_the_parsing_mask() -> None:
    from core.analytics import fast_mask
    from core.phone import mask

    for number in ("+919876543210", "+14155550123", "+442071838750", "+97143000000",
                   "+8801711000000", "+12345", "+35312345678", "withheld", "+0123456789"):
        assert fast_mask(number) == mask(number), number


async def test_socket_is_dropped_when_its_token_expires(api_url, an_settings) -> None:
    import asyncio

    from core.security import create_access_token

    ttl = an_settings.access_token_ttl_s
    token, _ = create_access_token(user_id=2, role="manager", settings=an_settings,
                                   now=datetime.now(UTC) - timedelta(seconds=ttl - 3))
    listener = Listener()
    await listener.connect(api_url, token)
    assert listener.sio.connected
    for _ in range(100):
        if not listener.sio.connected:
            break
        await asyncio.sleep(0.1)
    assert not listener.sio.connected
