"""Business-hours REST over real HTTP: CRUD, roles, the check, bad input, the seed, and the
publish-time checks of flows that use schedules, conditions, gathers and API nodes."""

from __future__ import annotations

from typing import Any

import httpx
from api_helpers import assert_error
from sqlalchemy import select

from core.db.models import AuditLog
from core.flows.samples import MAIN_FLOW_NAME, ORDER_FLOW_NAME
from core.seed_business_hours import SUPPORT_HOURS_NAME

DAY = [{"start": "09:00", "end": "18:00"}]
BASE = "/api/business-hours"


def body(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "timezone": "Asia/Kolkata",
            "weekly": {"mon": DAY, "tue": DAY, "wed": DAY, "thu": DAY, "fri": DAY,
                       "sat": [{"start": "09:00", "end": "13:00"}], "sun": []},
            "holidayCountry": "IN", **extra}


async def test_crud_check_and_audit(client: httpx.AsyncClient, auth, db) -> None:
    created = await client.post(BASE, json=body(
        "Mumbai office", holidaySubdivision="MH",
        customHolidays=[{"date": "2026-03-10", "name": "Offsite"}],
        overrides=[{"date": "2026-01-27", "closed": True, "message": "Stock-take today."}],
        messages={"closed": "We open at nine."}), headers=auth("admin"))
    assert created.status_code == 201, created.text
    hours = created.json()
    hid = hours["id"]
    assert hours["holidaySubdivision"] == "MH" and hours["weekly"]["sat"][0]["end"] == "13:00"
    assert hours["overrides"][0] == {"date": "2026-01-27", "closed": True,
                                     "message": "Stock-take today."}

    got = await client.get(f"{BASE}/{hid}", headers=auth("manager"))
    assert got.status_code == 200 and got.json()["name"] == "Mumbai office"
    listed = (await client.get(BASE, headers=auth("manager"))).json()
    assert hid in [i["id"] for i in listed["items"]] and listed["total"] >= 2

    async def check(at: str) -> dict[str, Any]:
        response = await client.get(f"{BASE}/{hid}/check", params={"at": at},
                                    headers=auth("manager"))
        assert response.status_code == 200, response.text
        return response.json()

    republic = await check("2026-01-26T11:00:00+05:30")
    assert (republic["open"], republic["reason"], republic["holiday"]) == (
        False, "holiday", "Republic Day")
    assert republic["nextOpenAt"].startswith("2026-01-28T09:00:00")  # 27th: the override
    override = await check("2026-01-27T05:00:00Z")
    assert (override["reason"], override["message"]) == ("override", "Stock-take today.")
    open_ = await check("2026-01-28T10:00:00+05:30")
    assert open_["open"] and open_["closesAt"].startswith("2026-01-28T18:00:00")
    saturday = await check("2026-01-31T14:00:00+05:30")
    assert saturday["message"] == "We open at nine."
    assert (await client.get(f"{BASE}/{hid}/check", headers=auth("manager"))).status_code == 200
    assert_error(await client.get(f"{BASE}/{hid}/check", params={"at": "2026-01-26T11:00:00"},
                                  headers=auth("manager")), 422)
    assert_error(await client.get(f"{BASE}/{hid}/check", params={"at": "yesterday"},
                                  headers=auth("manager")), 422)
    # An unencoded "+" arrives as a space: still read as the offset.
    spaced = await client.get(f"{BASE}/{hid}/check?at=2026-01-26T11:00:00+05:30",
                              headers=auth("manager"))
    assert spaced.status_code == 200 and spaced.json()["reason"] == "holiday"

    changed = await client.put(f"{BASE}/{hid}", json=body("Mumbai office", timezone="UTC"),
                               headers=auth("admin"))
    assert changed.status_code == 200 and changed.json()["timezone"] == "UTC"
    deleted = await client.delete(f"{BASE}/{hid}", headers=auth("admin"))
    assert deleted.status_code == 204
    assert_error(await client.get(f"{BASE}/{hid}", headers=auth("admin")), 404, "not_found")

    async with db() as session:
        actions = (await session.execute(
            select(AuditLog.action).where(AuditLog.entity_type == "business_hours",
                                          AuditLog.entity_id == str(hid))
            .order_by(AuditLog.id))).scalars().all()
    assert actions == ["business_hours.create", "business_hours.update", "business_hours.delete"]


async def test_roles(client: httpx.AsyncClient, auth) -> None:
    assert_error(await client.get(BASE), 401, "unauthorized")
    assert_error(await client.get(BASE, headers=auth("agent")), 403, "forbidden")
    assert_error(await client.post(BASE, json=body("by a manager"), headers=auth("manager")),
                 403, "forbidden")


async def test_bad_schedules_are_422s_naming_the_field(client: httpx.AsyncClient, auth) -> None:
    cases = [
        (body("a", weekly={"mon": [{"start": "09:00", "end": "13:00"},
                                   {"start": "12:00", "end": "18:00"}]}), "weekly", "overlap"),
        (body("b", weekly={"mon": [{"start": "18:00", "end": "09:00"}]}),
         "weekly.mon.0", "inverted"),
        (body("c", timezone="India/Bombay"), "timezone", "unknown time zone"),
        (body("d", holidayCountry="XX"), "holidayCountry", "unknown holiday country"),
        (body("e", holidaySubdivision="ZZ"), "holidaySubdivision", "unknown subdivision"),
        (body("f", overrides=[{"from": "2026-02-01", "to": "2026-01-01", "closed": True}]),
         "overrides.0", "before"),
        (body("g", weekly={"someday": []}), "weekly.someday", "Extra inputs"),
    ]
    for payload, where, what in cases:
        error = assert_error(await client.post(BASE, json=payload, headers=auth("admin")), 422)
        assert where in error["detail"] and what in error["detail"], (where, error)
    assert_error(await client.post(BASE, content=b"{", headers={
        **auth("admin"), "content-type": "application/json"}), 400, "malformed_json")


async def test_duplicate_name_is_a_conflict(client: httpx.AsyncClient, auth) -> None:
    assert (await client.post(BASE, json=body("Twice"), headers=auth("admin"))).status_code == 201
    assert_error(await client.post(BASE, json=body("twice"), headers=auth("admin")), 409)


async def test_seeded_support_hours_are_used_by_the_main_flow(
    client: httpx.AsyncClient, auth
) -> None:
    items = (await client.get(BASE, headers=auth("admin"))).json()["items"]
    support = next(i for i in items if i["name"] == SUPPORT_HOURS_NAME)
    assert support["holidayCountry"] == "IN" and support["weekly"]["sun"] == []
    assert support["weekly"]["sat"] == [{"start": "09:00", "end": "18:00"}]
    flows = (await client.get("/api/flows", headers=auth("admin"))).json()["items"]
    main = next(f for f in flows if f["name"] == MAIN_FLOW_NAME)
    assert ORDER_FLOW_NAME in [f["name"] for f in flows]
    draft = (await client.get(f"/api/flows/{main['id']}", headers=auth("admin"))).json()
    welcome = next(n for n in draft["nodes"] if n["id"] == "welcome")
    assert welcome["config"]["businessHoursId"] == support["id"]
    # A schedule a flow uses cannot be deleted out from under it.
    error = assert_error(await client.delete(f"{BASE}/{support['id']}", headers=auth("admin")),
                         409, "conflict")
    assert MAIN_FLOW_NAME in error["detail"]


async def _publish(client: httpx.AsyncClient, auth, nodes: list, connections: list,
                   name: str) -> httpx.Response:
    created = await client.post("/api/flows", json={
        "name": name, "entryNode": "w", "nodes": nodes, "connections": connections,
    }, headers=auth("admin"))
    assert created.status_code == 201, created.text
    return await client.post(f"/api/flows/{created.json()['id']}/publish", headers=auth("admin"))


def _node(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "name": node_id, "config": config}


async def test_publish_refuses_bad_logic_nodes_naming_node_and_field(
    client: httpx.AsyncClient, auth
) -> None:
    nodes = [
        _node("w", "welcome", message="Hi."),
        _node("d", "decision", conditions=[
            {"kind": "time", "operator": "open", "businessHoursId": 999999, "port": "a"},
            {"kind": "variable", "variable": "acct", "operator": "regex", "value": "(\\d+)+$",
             "port": "b"},
            {"kind": "variable", "variable": "dob", "operator": "gt", "value": 5, "port": "c"},
        ]),
        _node("g", "gather", message="Date of birth?", inputType="date", saveToVariable="dob",
              maxLength=6),
        _node("api", "api", url="http://169.254.169.254/latest/meta-data/{{ caller }}"),
        _node("api2", "api", url="https://{{ host }}/x"),
        _node("bye", "hangup"),
    ]
    conns = [{"fromNode": "w", "port": "next", "toNode": "g"},
             {"fromNode": "g", "port": "valid", "toNode": "d"},
             *[{"fromNode": "d", "port": p, "toNode": "api"} for p in ("a", "b", "c")],
             {"fromNode": "d", "port": "default", "toNode": "api2"},
             {"fromNode": "api", "port": "success", "toNode": "bye"},
             {"fromNode": "api", "port": "error", "toNode": "bye"},
             {"fromNode": "api2", "port": "success", "toNode": "bye"},
             {"fromNode": "api2", "port": "error", "toNode": "bye"}]
    response = await _publish(client, auth, nodes, conns, "bad logic")
    assert response.status_code == 422, response.text
    found = {(p["nodeId"], p["field"], p["code"]) for p in response.json()["problems"]}
    assert {
        ("d", "config.conditions[0].businessHoursId", "unknown_business_hours"),
        ("d", "config.conditions[1].value", "bad_regex"),
        ("d", "config.conditions[2].operator", "type_mismatch"),
        ("g", "config.maxLength", "type_mismatch"),
        ("api", "config.url", "forbidden_host"),
        ("api2", "config.url", "templated_host"),
    } <= found, found


async def test_unparseable_logic_nodes_are_refused_at_save(client: httpx.AsyncClient, auth) -> None:
    response = await client.post("/api/flows", json={
        "name": "bad regex", "nodes": [
            _node("w", "welcome"),
            _node("d", "decision", conditions=[{"kind": "variable", "variable": "x",
                                                "operator": "regex", "value": "([",
                                                "port": "a"}]),
        ], "connections": []}, headers=auth("admin"))
    assert response.status_code == 422
    problem = response.json()["problems"][0]
    assert problem["nodeId"] == "d" and problem["field"].startswith("config.conditions[0]")
    assert "regular expression" in problem["message"]
