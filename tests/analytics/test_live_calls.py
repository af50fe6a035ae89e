"""Every analytics figure and live event checked against real simulated calls: HTTP webhooks
→ API → Temporal → worker → PostgreSQL/Redis → analytics endpoints and Socket.IO clients."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx
import pytest
from an_support import Listener, bearer, make_worker
from sqlalchemy import select

from cli.call import TALK_TIME_S, Outcome, SimulatedCall
from core.db.models import CallQueueEntry, FlowExecution
from core.flows.samples import MAIN_FLOW_NAME
from core.phone import mask
from core.telephony import DialStatus

pytestmark = pytest.mark.slow

CALLERS = {k: f"+9198000000{n:02d}" for n, k in enumerate("ABCDE", start=1)}


async def _rows(sessionmaker, sids: list[str]) -> dict[str, FlowExecution]:
    async with sessionmaker() as session:
        rows = (
            await session.execute(select(FlowExecution).where(FlowExecution.call_sid.in_(sids)))
        ).scalars()
        return {r.call_sid: r for r in rows}


async def _wait_ended(sessionmaker, sids: list[str], timeout_s: float = 90) -> dict[str, Any]:
    for _ in range(int(timeout_s * 10)):
        rows = await _rows(sessionmaker, sids)
        if len(rows) == len(sids) and all(r.ended_at is not None for r in rows.values()):
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"calls did not end: {await _rows(sessionmaker, sids)}")


async def _set_status(http: httpx.AsyncClient, token: str, ids: list[int], status: str) -> None:
    for agent_id in ids:
        r = await http.put(f"/api/agents/{agent_id}/status", json={"status": status},
                           headers=bearer(token))
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
async def worker(client_dc, an_settings, sessionmaker):
    async with make_worker(
        client_dc, an_settings.temporal_task_queue, sessionmaker, an_settings.redis_url
    ):
        yield


@pytest.fixture(scope="module")
async def scenario(worker, api_url, http, tokens, an_settings, sessionmaker) -> dict[str, Any]:
    """Five calls with known outcomes, watched by three Socket.IO clients."""
    admin = tokens["admin"]
    flows = (await http.get("/api/flows", headers=bearer(admin))).json()["items"]
    main_flow = next(f for f in flows if f["name"] == MAIN_FLOW_NAME)
    agents = (await http.get("/api/agents", headers=bearer(admin))).json()["items"]
    tech = [a for a in agents if a["team"] == "tech"]
    billing = [a for a in agents if a["team"] == "billing"]
    assert len(tech) == 2 and len(billing) == 1

    watcher, bystander, agent_user = Listener(), Listener(), Listener()
    await watcher.connect(api_url, tokens["manager"])
    await bystander.connect(api_url, tokens["manager"])
    await agent_user.connect(api_url, tokens["agent"])
    joined = await watcher.join(f"flow:{main_flow['id']}")
    refused = await agent_user.join(f"flow:{main_flow['id']}")

    token = an_settings.webhook_token.get_secret_value()

    def call(key: str, **kw: Any) -> SimulatedCall:
        return SimulatedCall(api_url, token, caller=CALLERS[key], **kw)

    sims: dict[str, SimulatedCall] = {}
    await _set_status(http, admin, [a["id"] for a in tech + billing], "available")
    try:
        sims["A"] = call("A", digits=["2"])  # tech queue → answered by the best tech agent
        assert (await sims["A"].run()).outcome == Outcome.completed
        # The billing agent misses C (C leaves a voicemail), then answers B. In this order
        # because an answered call puts the agent in wrap-up, where C would not be offered.
        sims["C"] = call("C", digits=["1"], dial_outcome=DialStatus.no_answer)
        assert (await sims["C"].run()).outcome == Outcome.completed
        sims["B"] = call("B", digits=["1"])
        assert (await sims["B"].run()).outcome == Outcome.completed
    finally:
        await _set_status(http, admin, [a["id"] for a in tech + billing], "offline")
    # D hangs up at the menu; E (nobody staffed) hangs up while holding in the tech queue.
    sims["D"] = call("D", hangup_after=1)
    sims["E"] = call("E", digits=["2"], hangup_after=2)
    await asyncio.gather(sims["D"].run(), sims["E"].run())
    # While D and E wait out the silence timer, they are live: their state is queryable.
    live: dict[str, Any] = {}
    for _ in range(100):
        r = await http.get("/api/calls/active", headers=bearer(tokens["manager"]))
        assert r.status_code == 200, r.text
        live["active"] = r.json()
        if {sims["D"].call_sid, sims["E"].call_sid} <= {
            i["callSid"] for i in live["active"]["items"]
        }:
            break
        await asyncio.sleep(0.1)
    for key in ("D", "E"):
        for role in ("manager", "admin"):
            r = await http.get(f"/api/calls/{sims[key].call_sid}", headers=bearer(tokens[role]))
            assert r.status_code == 200, r.text
            live[f"{key}:{role}"] = r.json()
    rows = await _wait_ended(sessionmaker, [s.call_sid for s in sims.values()])
    async with sessionmaker() as session:
        entries = list((await session.execute(select(CallQueueEntry))).scalars())
    await watcher.wait_for("call:completed", lambda d: d["callSid"] == sims["E"].call_sid)
    await asyncio.sleep(1.0)  # a dashboard tick or two after the last call
    yield {
        "flow": main_flow, "tech": tech, "billing": billing, "sims": sims, "rows": rows,
        "entries": entries, "watcher": watcher, "bystander": bystander,
        "agent_user": agent_user, "joined": joined, "refused": refused, "live": live,
    }
    for listener in (watcher, bystander, agent_user):
        await listener.close()


def _sid(scenario: dict[str, Any], key: str) -> str:
    return scenario["sims"][key].call_sid


def test_the_calls_went_as_scripted(scenario) -> None:
    rows = {k: scenario["rows"][_sid(scenario, k)] for k in "ABCDE"}
    assert rows["A"].path == ["welcome", "main_menu", "tech_info", "tech_queue", "tech_transfer"]
    assert rows["A"].status == rows["B"].status == "completed"
    assert rows["B"].agent_id == scenario["billing"][0]["id"]
    assert rows["C"].agent_id is None and "voicemail" in rows["C"].path
    assert rows["C"].recording_url  # the voicemail
    assert rows["D"].status == "abandoned" and rows["D"].path[-1] == "main_menu"
    assert rows["E"].status == "abandoned" and rows["E"].path[-1] == "tech_queue"


async def test_dashboard_figures(scenario, http, tokens) -> None:
    r = await http.get("/api/analytics/dashboard", headers=bearer(tokens["manager"]))
    assert r.status_code == 200, r.text
    body = r.json()
    rows = list(scenario["rows"].values())
    ended = [x for x in rows if x.ended_at]
    completed = sum(1 for x in rows if x.status == "completed")
    assert body["callsToday"] == 5
    assert body["activeCalls"] == 0
    assert body["successRate"] == round(100 * completed / len(ended), 1)
    assert body["avgCallDuration"] == round(sum(x.duration_s for x in ended) / len(ended), 1)
    assert body["topFlows"] == [
        {"flowId": scenario["flow"]["id"], "flowName": MAIN_FLOW_NAME, "callCount": 5}
    ]
    # Queue entries: A answered at once (inside the 20 s threshold); E abandoned after > 5 s.
    entries = {e.call_sid: e for e in scenario["entries"]}
    a, e = entries[_sid(scenario, "A")], entries[_sid(scenario, "E")]
    assert a.status == "assigned" and e.status == "abandoned" and e.wait_s >= 5
    assert body["serviceLevel"] == 50.0
    assert body["abandonRate"] == 50.0
    assert body["avgSpeedOfAnswer"] == round(a.wait_s, 1)
    assert body["callsInQueue"] == 0 and body["longestWait"] == 0.0
    assert body["totalAgents"] == 4 and body["availableAgents"] == 0  # all signed out
    assert body["timezone"] == "Asia/Kolkata"


async def test_call_metrics_series(scenario, http, tokens) -> None:
    r = await http.get("/api/analytics/calls/metrics",
                       params={"interval": "hour", "from": "2026-01-01", "to": "2026-02-15"},
                       headers=bearer(tokens["manager"]))
    assert r.status_code == 422 and "at most 31 days" in r.json()["detail"]
    r = await http.get("/api/analytics/calls/metrics", headers=bearer(tokens["manager"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["calls"] == 5
    assert body["totals"]["completed"] + body["totals"]["abandoned"] + body["totals"][
        "failed"] == 5
    assert body["totals"]["abandoned"] == 2
    assert body["totals"]["serviceLevel"] == 50.0
    assert len(body["series"]) in (7, 8)  # 7 days back from now, partial first day
    assert sum(p["calls"] for p in body["series"]) == 5
    today = body["series"][-1]
    assert today["calls"] == 5 and today["serviceLevel"] == 50.0


async def test_history_pages_and_masking(scenario, http, tokens) -> None:
    sids = [_sid(scenario, k) for k in "ABCDE"]
    r = await http.get("/api/analytics/calls/history", params={"limit": 3},
                       headers=bearer(tokens["manager"]))
    assert r.status_code == 200, r.text
    first = r.json()
    assert len(first["items"]) == 3 and first["nextCursor"]
    r = await http.get("/api/analytics/calls/history",
                       params={"limit": 3, "cursor": first["nextCursor"]},
                       headers=bearer(tokens["manager"]))
    second = r.json()
    assert len(second["items"]) == 2 and second["nextCursor"] is None
    items = first["items"] + second["items"]
    assert [i["callSid"] for i in items] == [
        i["callSid"] for i in sorted(items, key=lambda i: (i["startedAt"], i["id"]), reverse=True)
    ]
    assert {i["callSid"] for i in items} == set(sids)
    by_sid = {i["callSid"]: i for i in items}
    a = by_sid[_sid(scenario, "A")]
    assert a["caller"] == mask(CALLERS["A"]) != CALLERS["A"]
    assert a["flowName"] == MAIN_FLOW_NAME and a["queueName"] == "Tech Support"
    assert a["agentName"] and a["queueWait"] is not None
    assert a["pathSummary"] == "welcome > main_menu > tech_info > tech_queue > tech_transfer"
    assert by_sid[_sid(scenario, "C")]["recordingUrl"]
    r = await http.get("/api/analytics/calls/history",
                       params={"caller": "098000 00001"}, headers=bearer(tokens["admin"]))
    only = r.json()["items"]
    assert [i["callSid"] for i in only] == [_sid(scenario, "A")]
    assert only[0]["caller"] == CALLERS["A"]  # admins see the number
    r = await http.get("/api/analytics/calls/history", params={"status": "abandoned"},
                       headers=bearer(tokens["manager"]))
    assert {i["callSid"] for i in r.json()["items"]} == {_sid(scenario, "D"), _sid(scenario, "E")}


async def test_csv_export_of_the_calls(scenario, http, tokens) -> None:
    r = await http.get("/api/analytics/calls/export/csv", params={"from": "2020-01-01",
                       "to": "2020-12-31"}, headers=bearer(tokens["manager"]))
    assert r.status_code == 200 and r.text.lstrip("\ufeff").count("\n") == 1  # header only
    r = await http.get("/api/analytics/calls/export/csv", headers=bearer(tokens["manager"]))
    assert r.status_code == 200  # no range: the last 30 days
    assert len(list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))) == 5
    from datetime import date, timedelta

    today = date.today()
    r = await http.get(
        "/api/analytics/calls/export/csv",
        params={"from": (today - timedelta(days=2)).isoformat(),
                "to": (today + timedelta(days=1)).isoformat()},
        headers=bearer(tokens["manager"]),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert {row["call_sid"] for row in rows} == {_sid(scenario, k) for k in "ABCDE"}
    c = next(row for row in rows if row["call_sid"] == _sid(scenario, "C"))
    assert c["recording_url"].startswith("http") and float(c["duration_s"]) > 0
    # Masked numbers start with '+': neutralised like any formula-looking cell.
    assert c["caller"] == "'" + mask(CALLERS["C"])


async def test_flow_analytics(scenario, http, tokens) -> None:
    flow_id = scenario["flow"]["id"]
    r = await http.get(f"/api/analytics/flows/{flow_id}/analytics",
                       headers=bearer(tokens["manager"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["flowId"] == flow_id and body["totalExecutions"] == 5
    assert body["completed"] == 3 and body["failed"] == 0 and body["abandoned"] == 2
    assert body["successRate"] == 60.0
    nodes = {n["nodeId"]: n for n in body["topNodes"]}
    assert nodes["welcome"]["visitCount"] == 5 and nodes["welcome"]["nodeType"] == "welcome"
    assert nodes["main_menu"]["callsReached"] == 5
    assert nodes["tech_queue"]["callsReached"] == 2
    assert body["dropOff"] == {"main_menu": 1, "tech_queue": 1}
    assert nodes["main_menu"]["dropOffs"] == 1 and nodes["main_menu"]["dropOffRate"] == 20.0
    menu = next(m for m in body["menuChoices"] if m["nodeId"] == "main_menu")
    choices = {c["choice"]: c["count"] for c in menu["choices"]}
    assert choices == {"1": 2, "2": 2, "(hung up)": 1}
    r = await http.get("/api/analytics/flows/999999/analytics", headers=bearer(tokens["manager"]))
    assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_agent_performance(scenario, http, tokens) -> None:
    r = await http.get("/api/analytics/agents/performance", headers=bearer(tokens["manager"]))
    assert r.status_code == 200, r.text
    perf = {a["agentId"]: a for a in r.json()["agents"]}
    rows = {k: scenario["rows"][_sid(scenario, k)] for k in "ABCDE"}
    tech_agent = perf[rows["A"].agent_id]
    assert tech_agent["callsHandled"] == 1 and tech_agent["missed"] == 0
    assert tech_agent["averageHandleTime"] == 5 + TALK_TIME_S
    assert tech_agent["averageWrapUp"] == 10.0
    assert tech_agent["availableS"] > 0 and tech_agent["occupancy"] == 100.0  # capped
    assert tech_agent["currentStatus"] == "offline"
    bill = perf[scenario["billing"][0]["id"]]
    assert bill["callsHandled"] == 1 and bill["missed"] == 1
    other = next(t for t in scenario["tech"] if t["id"] != rows["A"].agent_id)
    assert perf[other["id"]]["callsHandled"] == 0 and perf[other["id"]]["occupancy"] == 0.0


def test_live_call_state_masks_and_positions(scenario) -> None:
    live, sims = scenario["live"], scenario["sims"]
    d_m = live["D:manager"]
    assert d_m["currentNode"] == "main_menu" and d_m["currentNodeType"] == "menu"
    assert d_m["caller"] == mask(CALLERS["D"]) and live["D:admin"]["caller"] == CALLERS["D"]
    assert d_m["status"] == "in_progress" and d_m["awaiting"] == "gather"
    e = live["E:manager"]
    assert e["currentNode"] == "tech_queue" and e["queuePosition"] == 1
    assert e["queueId"] is not None and e["queueWait"] >= 0
    active = {i["callSid"]: i for i in live["active"]["items"]}
    assert active[sims["D"].call_sid]["currentNode"] == "main_menu"
    assert active[sims["E"].call_sid]["queuePosition"] == 1


async def test_socket_clients_receive_every_event_type(scenario) -> None:
    watcher = scenario["watcher"]
    sims, flow_id = scenario["sims"], scenario["flow"]["id"]
    assert scenario["joined"] == {"ok": True, "room": f"flow:{flow_id}"}
    started = {d["callSid"]: d for d in watcher.got["call:started"]}
    assert set(started) == {s.call_sid for s in sims.values()}  # once each
    assert len(watcher.got["call:started"]) == 5
    a = started[sims["A"].call_sid]
    assert a["flowId"] == flow_id and a["flowName"] == MAIN_FLOW_NAME
    assert a["callerNumber"] == mask(CALLERS["A"])
    done = {d["callSid"]: d for d in watcher.got["call:completed"]}
    assert len(watcher.got["call:completed"]) == 5
    rows = scenario["rows"]
    for sid, d in done.items():
        assert d["status"] == rows[sid].status and d["flowId"] == flow_id
        assert d["duration"] == round(rows[sid].duration_s, 1)
    visits = [d for d in watcher.got["flow:execution"] if d["callSid"] == sims["A"].call_sid]
    assert [v["currentNodeId"] for v in visits][:2] == ["welcome", "main_menu"]
    assert {v["currentNodeId"] for v in visits} >= set(rows[sims["A"].call_sid].path)
    assert visits[0]["executionId"] == rows[sims["A"].call_sid].id
    assert visits[0]["nodeName"]
    tech_ids = {t["id"] for t in scenario["tech"]}
    statuses = [d for d in watcher.got["agent:status"] if d["agentId"] in tech_ids]
    assert {"available", "on_call", "offline"} <= {d["status"] for d in statuses}
    assert all(d["agentName"] and isinstance(d["currentCalls"], int) for d in statuses)
    queue = watcher.got["queue:update"]
    assert any(q["queueName"] == "Tech Support" and q["currentSize"] == 1 for q in queue)
    assert all({"queueId", "queueName", "currentSize", "longestWaitTime"} <= set(q) for q in queue)
    dash = watcher.got["dashboard:metrics"]
    assert dash and {"activeCalls", "callsInQueue", "availableAgents", "totalAgents",
                     "callsToday", "avgCallDuration", "successRate", "topFlows",
                     "serviceLevel", "abandonRate", "avgSpeedOfAnswer",
                     "longestWait"} <= set(dash[-1])
    assert dash[-1]["callsToday"] == 5


def test_rooms_are_isolated(scenario) -> None:
    bystander, agent_user = scenario["bystander"], scenario["agent_user"]
    assert bystander.got["call:started"] and not bystander.got["flow:execution"]
    assert scenario["refused"]["ok"] is False and scenario["refused"]["error"] == "forbidden"
    assert agent_user.got["room:error"]
    # An agent sees the floor (queues and agents) but not calls, flows or the dashboard.
    assert agent_user.got["agent:status"]
    for name in ("call:started", "call:completed", "flow:execution", "dashboard:metrics"):
        assert not agent_user.got[name], name
