"""Flows REST over real HTTP: drafts, concurrency, publish/rollback, export/import, numbers,
the default flow, roles, audit rows, the seeded flows, and bad input that changes nothing."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import httpx
import pytest
from api_helpers import assert_error
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.config import Settings
from core.db.models import AuditLog, Flow, FlowConnection, FlowNode, FlowVersion
from core.flows.samples import MAIN_FLOW_NAME, SALES_FLOW_NAME, SIMPLE_FLOW_NAME
from core.flows.schema import FlowDefinition
from core.flows.validate import validate_flow
from core.repositories import flows as flows_repo
from core.seed import run_seed

Client = httpx.AsyncClient


def small_flow(name: str, message: str = "Hello {{ caller }}") -> dict[str, Any]:
    return {
        "name": name,
        "description": "test flow",
        "nodes": [
            {"id": "w", "type": "welcome", "name": "Welcome", "config": {"message": message},
             "position": {"x": 1, "y": 2}},
            {"id": "m", "type": "menu", "name": "Menu",
             "config": {"message": "Press 1", "options": [{"digit": "1", "label": "One"}]}},
            {"id": "bye", "type": "hangup", "name": "Bye", "config": {"message": "Bye"}},
        ],
        "connections": [
            {"fromNode": "w", "port": "next", "toNode": "m"},
            {"fromNode": "m", "port": "1", "toNode": "bye"},
        ],
    }


async def create(client: Client, auth, body: dict[str, Any], who: str = "manager") -> dict:
    response = await client.post("/api/flows", json=body, headers=auth(who))
    assert response.status_code == 201, response.text
    return response.json()


def draft_body(flow: dict[str, Any]) -> dict[str, Any]:
    """The PUT body for a GET /api/flows/{id} response."""
    keys = ("name", "description", "entryNode", "nodes", "connections", "draftRevision")
    return copy.deepcopy({k: flow[k] for k in keys if k in flow and flow[k] is not None})


async def audit_actions(db: async_sessionmaker[AsyncSession], flow_id: int) -> list[str]:
    async with db() as session:
        rows = await session.execute(
            select(AuditLog.action)
            .where(AuditLog.entity_type == "flow", AuditLog.entity_id == str(flow_id))
            .order_by(AuditLog.id)
        )
        return list(rows.scalars())


async def flow_row_counts(db: async_sessionmaker[AsyncSession]) -> tuple[int, ...]:
    async with db() as session:
        out = []
        for model in (Flow, FlowNode, FlowConnection, FlowVersion):
            out.append((await session.execute(select(func.count()).select_from(model)))
                       .scalar_one())
        return tuple(out)


# --- the seeded flows ------------------------------------------------------------------------


async def test_seeded_flows_are_listed_published_and_the_main_one_is_default(
    client: Client, auth
) -> None:
    response = await client.get("/api/flows", headers=auth("manager"))
    assert response.status_code == 200, response.text
    items = {f["name"]: f for f in response.json()["items"]}
    assert {MAIN_FLOW_NAME, SIMPLE_FLOW_NAME, SALES_FLOW_NAME} <= set(items)
    main = items[MAIN_FLOW_NAME]
    assert main["isDefault"] is True and main["liveVersion"] == 1 and main["nodeCount"] == 17
    assert items[SIMPLE_FLOW_NAME]["isDefault"] is False
    assert items[SIMPLE_FLOW_NAME]["liveVersion"] == 1

    full = (await client.get(f"/api/flows/{main['id']}", headers=auth("manager"))).json()
    assert len(full["nodes"]) == 17 and len(full["connections"]) == 23
    assert full["entryNode"] == "welcome"
    assert full["nodes"][0]["config"]["checkBusinessHours"] is True
    checked = await client.post(f"/api/flows/{main['id']}/validate", headers=auth("manager"))
    assert checked.json() == {"valid": True, "problems": []}

    version = (await client.get(f"/api/flows/{main['id']}/versions/1",
                                headers=auth("manager"))).json()
    defn = FlowDefinition.model_validate(version["definition"])
    assert (len(defn.nodes), len(defn.connections)) == (17, 23)
    assert validate_flow(defn) == []
    assert version["checksum"] == hashlib.sha256(defn.canonical_json().encode()).hexdigest()


async def test_seed_is_idempotent(api_settings: Settings, db) -> None:
    before = await flow_row_counts(db)
    await run_seed(api_settings)
    await run_seed(api_settings)
    assert await flow_row_counts(db) == before


# --- roles -----------------------------------------------------------------------------------


async def test_roles(client: Client, auth) -> None:
    assert_error(await client.get("/api/flows"), 401, "unauthorized")
    # Agents have no flows:view in the permission table, so no read and no edit.
    assert_error(await client.get("/api/flows", headers=auth("agent")), 403, "forbidden")
    assert_error(await client.post("/api/flows", json=small_flow("agent flow"),
                                   headers=auth("agent")), 403, "forbidden")
    flow = await create(client, auth, small_flow("roles flow"))
    fid = flow["id"]
    assert_error(await client.get(f"/api/flows/{fid}", headers=auth("agent")), 403)
    assert_error(await client.put(f"/api/flows/{fid}", json=draft_body(flow),
                                  headers=auth("agent")), 403)
    # Managers edit drafts but may not publish, roll back, route numbers or set the default.
    assert_error(await client.post(f"/api/flows/{fid}/publish", headers=auth("manager")), 403)
    assert_error(await client.put(f"/api/flows/{fid}/numbers", json={"numbers": []},
                                  headers=auth("manager")), 403)
    assert_error(await client.post(f"/api/flows/{fid}/default", headers=auth("manager")), 403)
    published = await client.post(f"/api/flows/{fid}/publish", headers=auth("admin"))
    assert published.status_code == 201, published.text
    assert_error(await client.post(f"/api/flows/{fid}/versions/1/publish",
                                   headers=auth("manager")), 403)
    # Deleting a published flow changes live calls: it needs flows:publish too.
    body = assert_error(await client.delete(f"/api/flows/{fid}", headers=auth("manager")), 403)
    assert "flows:publish" in body["detail"]
    draft_only = await create(client, auth, small_flow("roles draft only"))
    deleted = await client.delete(f"/api/flows/{draft_only['id']}", headers=auth("manager"))
    assert deleted.status_code == 204


# --- drafts ----------------------------------------------------------------------------------


async def test_create_get_and_replace_the_draft(client: Client, auth, db) -> None:
    flow = await create(client, auth, small_flow("draft flow"))
    assert flow["draftRevision"] == 1 and flow["liveVersion"] is None
    # Stored in canonical form: defaults spelt out, unset (null) fields left out.
    assert flow["nodes"][0] == {"id": "w", "type": "welcome", "name": "Welcome",
                                "config": {"message": "Hello {{ caller }}",
                                           "checkBusinessHours": False},
                                "position": {"x": 1.0, "y": 2.0}}
    body = draft_body(flow)
    body["nodes"].append({"id": "extra", "type": "play", "config": {"message": "More"}})
    body["connections"][1]["toNode"] = "extra"
    body["connections"].append({"fromNode": "extra", "port": "next", "toNode": "bye"})
    response = await client.put(f"/api/flows/{flow['id']}", json=body, headers=auth("manager"))
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["draftRevision"] == 2
    assert [n["id"] for n in updated["nodes"]] == ["w", "m", "bye", "extra"]
    assert updated["nodes"][3]["name"] == "extra"  # the name defaults to the id
    assert len(updated["connections"]) == 3
    assert await audit_actions(db, flow["id"]) == ["flow.create", "flow.update"]


async def test_stale_draft_revision_is_409_and_changes_nothing(client: Client, auth) -> None:
    flow = await create(client, auth, small_flow("concurrent flow"))
    first = draft_body(flow)
    first["description"] = "first editor"
    second = draft_body(flow)
    second["description"] = "second editor"
    assert (await client.put(f"/api/flows/{flow['id']}", json=first,
                             headers=auth("manager"))).status_code == 200
    body = assert_error(await client.put(f"/api/flows/{flow['id']}", json=second,
                                         headers=auth("admin")), 409, "conflict")
    assert "revision is 2, not 1" in body["detail"]
    now = (await client.get(f"/api/flows/{flow['id']}", headers=auth("manager"))).json()
    assert now["description"] == "first editor" and now["draftRevision"] == 2


async def test_invalid_documents_name_the_node_and_change_nothing(
    client: Client, auth, db
) -> None:
    flow = await create(client, auth, small_flow("invalid edits"))
    before = await flow_row_counts(db)
    url = f"/api/flows/{flow['id']}"

    bad = draft_body(flow)
    bad["nodes"][1]["config"]["timeout"] = 0
    bad["nodes"][0]["config"]["colour"] = "red"
    response = await client.put(url, json=bad, headers=auth("manager"))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_flow" and "node m, config.timeout" in body["detail"]
    assert {(p["nodeId"], p["field"]) for p in body["problems"]} == {
        ("m", "config.timeout"), ("w", "config.colour")}

    dup = draft_body(flow)
    dup["nodes"].append(copy.deepcopy(dup["nodes"][0]))
    dup["connections"].append({"fromNode": "w", "port": "next", "toNode": "bye"})
    dup["connections"].append({"fromNode": "ghost", "port": "next", "toNode": "bye"})
    body = (await client.put(url, json=dup, headers=auth("manager"))).json()
    assert {p["code"] for p in body["problems"]} == {
        "duplicate_node_id", "duplicate_port", "unknown_node"}

    wrong_type = draft_body(flow)
    wrong_type["nodes"][2]["type"] = "teleport"
    body = (await client.put(url, json=wrong_type, headers=auth("manager"))).json()
    assert body["problems"][0]["nodeId"] == "bye" and body["problems"][0]["field"] == "type"

    response = await client.put(url, json={**draft_body(flow), "draftRevision": "x"},
                                headers=auth("manager"))
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "draftRevision"
    assert_error(await client.put(url, content=b"{not json", headers={
        **auth("manager"), "content-type": "application/json"}), 400, "malformed_json")
    response = await client.post("/api/flows", json=[], headers=auth("manager"))
    assert response.status_code == 422 and response.json()["error"] == "invalid_flow"
    assert_error(await client.get("/api/flows/99999999999", headers=auth("manager")), 422)
    assert_error(await client.get("/api/flows/999999", headers=auth("manager")), 404)

    assert await flow_row_counts(db) == before
    now = (await client.get(url, headers=auth("manager"))).json()
    assert now["draftRevision"] == 1 and now["nodes"] == flow["nodes"]


async def test_an_incomplete_draft_is_stored_but_reported(client: Client, auth) -> None:
    body = small_flow("incomplete")
    body["nodes"][1]["config"]["options"].append({"digit": "2"})
    body["nodes"].append({"id": "orphan", "type": "play", "config": {"message": "{{ oops"}})
    flow = await create(client, auth, body)
    result = (await client.post(f"/api/flows/{flow['id']}/validate",
                                headers=auth("manager"))).json()
    assert result["valid"] is False
    assert {(p["code"], p["nodeId"]) for p in result["problems"]} == {
        ("missing_port", "m"), ("missing_port", "orphan"), ("unreachable", "orphan"),
        ("bad_template", "orphan")}


async def test_duplicate_names_conflict(client: Client, auth) -> None:
    await create(client, auth, small_flow("same name"))
    assert_error(await client.post("/api/flows", json=small_flow("same name"),
                                   headers=auth("manager")), 409, "conflict")


# --- publish, versions, rollback ---------------------------------------------------------------


async def test_publishing_a_broken_draft_is_422_and_changes_nothing(
    client: Client, auth, db
) -> None:
    body = small_flow("broken publish")
    body["connections"].pop()  # menu option 1 goes nowhere; the hangup is unreachable
    flow = await create(client, auth, body)
    before = await flow_row_counts(db)
    response = await client.post(f"/api/flows/{flow['id']}/publish", headers=auth("admin"))
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert {(p["code"], p["nodeId"]) for p in problems} == {
        ("missing_port", "m"), ("unreachable", "bye")}
    assert await flow_row_counts(db) == before
    now = (await client.get(f"/api/flows/{flow['id']}", headers=auth("admin"))).json()
    assert now["liveVersion"] is None
    assert (await client.get(f"/api/flows/{flow['id']}/versions",
                             headers=auth("admin"))).json() == []
    assert "flow.publish" not in await audit_actions(db, flow["id"])


async def test_publish_freezes_immutable_versions_and_rollback_restores_one(
    client: Client, auth, db
) -> None:
    flow = await create(client, auth, small_flow("versioned", message="Version one"))
    fid = flow["id"]
    v1 = await client.post(f"/api/flows/{fid}/publish", json={"note": "first"},
                           headers=auth("admin"))
    assert v1.status_code == 201, v1.text
    assert v1.json()["version"] == 1 and v1.json()["isLive"] is True

    body = draft_body(flow)
    body["nodes"][0]["config"]["message"] = "Version two"
    assert (await client.put(f"/api/flows/{fid}", json=body,
                             headers=auth("manager"))).status_code == 200
    # Editing the draft leaves the published version alone.
    frozen = (await client.get(f"/api/flows/{fid}/versions/1", headers=auth("admin"))).json()
    assert frozen["definition"]["nodes"][0]["config"]["message"] == "Version one"
    v2 = (await client.post(f"/api/flows/{fid}/publish", headers=auth("admin"))).json()
    assert v2["version"] == 2 and v2["checksum"] != v1.json()["checksum"]

    versions = (await client.get(f"/api/flows/{fid}/versions", headers=auth("admin"))).json()
    assert [(v["version"], v["isLive"], v["note"]) for v in versions] == [
        (2, True, None), (1, False, "first")]

    async with db() as session:
        resolved = await flows_repo.resolve_flow_for_number(session, None)
    assert resolved is not None and resolved.flow_id != fid  # not the default flow

    rolled = await client.post(f"/api/flows/{fid}/versions/1/publish", headers=auth("admin"))
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 1 and rolled.json()["isLive"] is True
    now = (await client.get(f"/api/flows/{fid}", headers=auth("admin"))).json()
    assert now["liveVersion"] == 1 and now["draftRevision"] == 2
    # Version rows never change: the same definition and checksum as when published.
    again = (await client.get(f"/api/flows/{fid}/versions/1", headers=auth("admin"))).json()
    assert again["definition"] == frozen["definition"] and again["checksum"] == frozen["checksum"]
    assert_error(await client.post(f"/api/flows/{fid}/versions/9/publish",
                                   headers=auth("admin")), 404)
    actions = await audit_actions(db, fid)
    assert actions == ["flow.create", "flow.publish", "flow.update", "flow.publish",
                       "flow.rollback"]


# --- export / import -------------------------------------------------------------------------


async def test_export_import_round_trips_exactly(client: Client, auth) -> None:
    main = next(f for f in (await client.get("/api/flows", headers=auth("manager"))).json()
                ["items"] if f["name"] == MAIN_FLOW_NAME)
    exported = await client.get(f"/api/flows/{main['id']}/export", headers=auth("manager"))
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    doc = exported.json()
    assert doc["format"] == "ivr-flow" and doc["formatVersion"] == 1
    assert len(doc["nodes"]) == 17 and len(doc["connections"]) == 23

    # Same name as a live flow: refused; under a new name: a new unpublished draft.
    assert_error(await client.post("/api/flows/import", json=doc, headers=auth("manager")), 409)
    imported = await client.post("/api/flows/import", params={"name": "Imported copy"},
                                 json=doc, headers=auth("manager"))
    assert imported.status_code == 201, imported.text
    copy_ = imported.json()
    assert copy_["liveVersion"] is None and copy_["isDefault"] is False
    again = (await client.get(f"/api/flows/{copy_['id']}/export",
                              headers=auth("manager"))).json()
    assert again == {**doc, "name": "Imported copy"}

    # And a flow imported under its own name exports to the identical document.
    await client.delete(f"/api/flows/{copy_['id']}", headers=auth("manager"))
    twice = await client.post("/api/flows/import", json=again, headers=auth("manager"))
    assert twice.status_code == 201, twice.text
    third = (await client.get(f"/api/flows/{twice.json()['id']}/export",
                              headers=auth("manager"))).json()
    assert json.dumps(third, sort_keys=True) == json.dumps(again, sort_keys=True)

    v1 = (await client.get(f"/api/flows/{main['id']}/export", params={"version": 1},
                           headers=auth("manager"))).json()
    assert v1 == doc
    bad = {**doc, "formatVersion": 99}
    assert (await client.post("/api/flows/import", json=bad,
                              headers=auth("manager"))).status_code == 422


# --- numbers and the default flow ---------------------------------------------------------------


async def test_numbers_are_normalised_exclusive_and_route_calls(
    client: Client, auth, db
) -> None:
    a = await create(client, auth, small_flow("numbers a", message="flow a"))
    b = await create(client, auth, small_flow("numbers b", message="flow b"))
    for f in (a, b):
        assert (await client.post(f"/api/flows/{f['id']}/publish",
                                  headers=auth("admin"))).status_code == 201
    response = await client.put(
        f"/api/flows/{a['id']}/numbers",
        json={"numbers": ["09876500001", "+91 98765 00002", "919876500001"]},
        headers=auth("admin"),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"flowId": a["id"],
                               "numbers": ["+919876500001", "+919876500002"]}
    body = assert_error(await client.put(f"/api/flows/{b['id']}/numbers",
                                         json={"numbers": ["+919876500002"]},
                                         headers=auth("admin")), 409, "conflict")
    assert "+919876500002" in body["detail"]
    body = assert_error(await client.put(f"/api/flows/{b['id']}/numbers",
                                         json={"numbers": ["+919876500009", "not-a-number"]},
                                         headers=auth("admin")), 422)
    assert "numbers[1]" in body["detail"]
    listed = {f["id"]: f for f in (await client.get("/api/flows", headers=auth("admin")))
              .json()["items"]}
    assert listed[a["id"]]["numbers"] == ["+919876500001", "+919876500002"]
    assert listed[b["id"]]["numbers"] == []

    async with db() as session:
        mine = await flows_repo.resolve_flow_for_number(session, "09876500002")
        other = await flows_repo.resolve_flow_for_number(session, "+919999999999")
        anonymous = await flows_repo.resolve_flow_for_number(session, None)
    assert mine is not None and mine.flow_id == a["id"] and mine.version == 1
    assert mine.definition["nodes"][0]["config"]["message"] == "flow a"
    assert mine.name == "numbers a"
    assert other is not None and other.name == MAIN_FLOW_NAME
    assert anonymous is not None and anonymous.flow_id == other.flow_id

    # Deleting a flow releases its numbers to the default flow.
    assert (await client.delete(f"/api/flows/{a['id']}", headers=auth("admin"))).status_code == 204
    async with db() as session:
        released = await flows_repo.resolve_flow_for_number(session, "+919876500002")
    assert released is not None and released.name == MAIN_FLOW_NAME
    assert (await client.put(f"/api/flows/{b['id']}/numbers", json={"numbers": ["+919876500002"]},
                             headers=auth("admin"))).status_code == 200


async def test_resolver_skips_unpublished_flows_and_caches_by_checksum(
    client: Client, auth, db
) -> None:
    draft = await create(client, auth, small_flow("unpublished numbers"))
    assert (await client.put(f"/api/flows/{draft['id']}/numbers",
                             json={"numbers": ["+919876500077"]},
                             headers=auth("admin"))).status_code == 200
    resolve = flows_repo.make_flow_resolver(db)
    got = await resolve("+919876500077")
    assert got is not None and got.name == MAIN_FLOW_NAME  # falls back to the default
    assert (await client.post(f"/api/flows/{draft['id']}/publish",
                              headers=auth("admin"))).status_code == 201
    got = await resolve("+919876500077")
    assert got is not None and got.flow_id == draft["id"] and got.version == 1
    assert await resolve("+919876500077") == got


async def test_a_callback_custom_field_picks_the_callbacks_flow(client: Client, auth, db) -> None:
    """A call we placed for a callback runs the callback's flow, whatever number it shows."""
    from core.db.models import VoiceCallback

    flow = await create(client, auth, small_flow("callback flow"))
    assert (await client.post(f"/api/flows/{flow['id']}/publish",
                              headers=auth("admin"))).status_code == 201
    async with db() as session:
        callback = VoiceCallback(phone_number="+919876500011", flow_id=flow["id"], asap=True)
        session.add(callback)
        await session.commit()
        callback_id = callback.id
    resolve = flows_repo.make_flow_resolver(db)
    got = await resolve("+918000000000", f"cb:{callback_id}:1")
    assert got is not None and got.flow_id == flow["id"] and got.name == "callback flow"
    # Anything else in CustomField, or no such callback: the number decides as before.
    for custom in ("order-123", f"cb:{callback_id + 1000}:1", None):
        other = await resolve("+918000000000", custom)
        assert other is not None and other.name == MAIN_FLOW_NAME


async def test_default_flow(client: Client, auth, db) -> None:
    listing = (await client.get("/api/flows", headers=auth("admin"))).json()["items"]
    main = next(f for f in listing if f["name"] == MAIN_FLOW_NAME)
    body = assert_error(await client.delete(f"/api/flows/{main['id']}", headers=auth("admin")),
                        409, "conflict")
    assert "default" in body["detail"]

    flow = await create(client, auth, small_flow("next default"))
    assert_error(await client.post(f"/api/flows/{flow['id']}/default", headers=auth("admin")),
                 409)
    await client.post(f"/api/flows/{flow['id']}/publish", headers=auth("admin"))
    made = await client.post(f"/api/flows/{flow['id']}/default", headers=auth("admin"))
    assert made.status_code == 200 and made.json()["isDefault"] is True
    listing = (await client.get("/api/flows", headers=auth("admin"))).json()["items"]
    assert [f["name"] for f in listing if f["isDefault"]] == ["next default"]
    async with db() as session:
        resolved = await flows_repo.resolve_flow_for_number(session, "+918000000000")
    assert resolved is not None and resolved.flow_id == flow["id"]
    # Put the seeded flow back as the default for the other tests.
    assert (await client.post(f"/api/flows/{main['id']}/default",
                              headers=auth("admin"))).status_code == 200
    assert "flow.default" in await audit_actions(db, flow["id"])


async def test_deleted_flows_disappear_and_free_their_name(client: Client, auth, db) -> None:
    flow = await create(client, auth, small_flow("short lived"))
    assert (await client.delete(f"/api/flows/{flow['id']}",
                                headers=auth("manager"))).status_code == 204
    assert_error(await client.get(f"/api/flows/{flow['id']}", headers=auth("manager")), 404)
    assert_error(await client.delete(f"/api/flows/{flow['id']}", headers=auth("manager")), 404)
    names = [f["name"] for f in (await client.get("/api/flows", headers=auth("manager")))
             .json()["items"]]
    assert "short lived" not in names
    await create(client, auth, small_flow("short lived"))
    assert await audit_actions(db, flow["id"]) == ["flow.create", "flow.delete"]


@pytest.mark.parametrize("path", ["", "/1", "/1/versions", "/1/export"])
async def test_reads_are_guarded(client: Client, auth, path: str) -> None:
    assert_error(await client.get(f"/api/flows{path}"), 401)
    assert_error(await client.get(f"/api/flows{path}", headers=auth("agent")), 403)
