"""Agents and queues over real HTTP: roles, bad input, live status, refusals that say why."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from sqlalchemy import select

from api.main import create_app
from core.config import Settings
from core.db.models import User
from core.db.session import make_engine, make_sessionmaker
from core.routing.model import Requirements
from core.routing.store import QueueRouting
from core.seed import seed_users

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_helpers import PASSWORDS, login, serve


@pytest_asyncio.fixture(scope="module")
async def api(
    settings: Settings, cheap_hashing: None
) -> AsyncIterator[tuple[httpx.AsyncClient, object, dict]]:
    engine = make_engine(settings.database_url, pool_size=1)
    async with make_sessionmaker(engine)() as session:
        await seed_users(session, settings)
        await session.commit()
        agent_user = (
            await session.execute(select(User).where(User.username == "agent"))
        ).scalar_one()
    await engine.dispose()
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        await client.get("/health")
        sessions = {
            name: (await login(client, name, PASSWORDS[name])).headers
            for name in ("admin", "manager", "agent")
        }
        sessions["agent_user_id"] = agent_user.id
        yield client, app, sessions


def _agent(**kw):
    return {
        "name": "Meera",
        "phoneNumber": "09876500001",
        "skills": {"technical": 4},
        "team": "tech",
        "wrapUpS": 0,
        **kw,
    }


async def test_agents_crud_roles_and_bad_input(api):
    client, _app, s = api
    assert (await client.get("/api/agents")).status_code == 401
    r = await client.post("/api/agents", json=_agent(), headers=s["manager"])
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = await client.post("/api/agents", json=_agent(), headers=s["admin"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["phoneNumber"] == "+919876500001" and body["status"] == "offline"
    assert body["maxConcurrentCalls"] == 1
    for bad, field in (
        ({"skills": {"technical": 7}}, "skills"),
        ({"skills": {"bad skill!": 2}}, "skills"),
        ({"phoneNumber": "hello"}, "phoneNumber"),
        ({"wrapUpS": -5}, "wrapUpS"),
        ({"maxConcurrentCalls": 0}, "maxConcurrentCalls"),
        ({"colour": "blue"}, "colour"),
    ):
        r = await client.post("/api/agents", json=_agent(**bad), headers=s["admin"])
        assert r.status_code == 422, (bad, r.text)
        assert field in r.json()["detail"] and r.json()["error"] == "invalid_input"
    r = await client.post("/api/agents", json=_agent(userId=999999), headers=s["admin"])
    assert r.status_code == 422 and "userId" in r.json()["detail"]
    assert (await client.get("/api/agents/424242", headers=s["agent"])).status_code == 404
    listed = (await client.get("/api/agents", headers=s["agent"])).json()
    assert any(a["id"] == body["id"] for a in listed["items"])


async def test_status_changes_own_only_and_refused_while_on_a_call(api):
    client, app, s = api
    mine = (
        await client.post(
            "/api/agents", json=_agent(name="Own", userId=s["agent_user_id"]), headers=s["admin"]
        )
    ).json()
    other = (
        await client.post(
            "/api/agents",
            json=_agent(name="Other", phoneNumber="+919876500009"),
            headers=s["admin"],
        )
    ).json()
    r = await client.put(
        f"/api/agents/{mine['id']}/status", json={"status": "available"}, headers=s["agent"]
    )
    assert r.status_code == 200 and r.json()["status"] == "available"
    r = await client.put(
        f"/api/agents/{other['id']}/status", json={"status": "available"}, headers=s["agent"]
    )
    assert r.status_code == 403 and "own" in r.json()["detail"]
    r = await client.put(
        f"/api/agents/{other['id']}/status", json={"status": "on_call"}, headers=s["manager"]
    )
    assert r.status_code == 422 and "status" in r.json()["detail"]
    r = await client.put(
        f"/api/agents/{other['id']}/status", json={"status": "available"}, headers=s["manager"]
    )
    assert r.status_code == 200

    store = app.state.routing_store
    got = await store.reserve(
        Requirements(agent_ids=(mine["id"],)),
        "sequential",
        lease="api-test-call",
        lease_s=60,
        on_call=True,
    )
    assert got.id == mine["id"]
    r = await client.put(
        f"/api/agents/{mine['id']}/status", json={"status": "break"}, headers=s["agent"]
    )
    assert r.status_code == 409 and "on_call" in r.json()["detail"]
    r = await client.delete(f"/api/agents/{mine['id']}", headers=s["admin"])
    assert r.status_code == 409 and "on_call" in r.json()["detail"]
    shown = (await client.get(f"/api/agents/{mine['id']}", headers=s["agent"])).json()
    assert shown["status"] == "on_call" and shown["activeCalls"] == 1
    await store.release("api-test-call", handled=False)
    assert (await client.delete(f"/api/agents/{mine['id']}", headers=s["admin"])).status_code == 204
    assert (await client.get(f"/api/agents/{mine['id']}", headers=s["admin"])).status_code == 404


async def test_queues_crud_stats_entries_and_refused_delete(api):
    client, app, s = api
    q = {
        "name": "Tech support",
        "strategy": "skills_based",
        "requiredSkills": {"technical": 2},
        "maxWaitS": 300,
        "widening": [{"afterS": 60, "relaxBy": 1}],
        "callbackEnabled": True,
    }
    assert (await client.post("/api/queues", json=q, headers=s["manager"])).status_code == 403
    r = await client.post("/api/queues", json=q, headers=s["admin"])
    assert r.status_code == 201, r.text
    queue = r.json()
    assert queue["widening"] == [{"afterS": 60.0, "relaxBy": 1, "dropOptional": False}]
    assert (await client.post("/api/queues", json=q, headers=s["admin"])).status_code == 409
    for bad, field in (
        ({"maxWaitS": -1}, "maxWaitS"),
        ({"strategy": "random"}, "strategy"),
        ({"requiredSkills": {"x": 0}}, "requiredSkills"),
        ({"announceIntervalS": 0}, "announceIntervalS"),
    ):
        r = await client.post("/api/queues", json={**q, "name": "other", **bad}, headers=s["admin"])
        assert r.status_code == 422 and field in r.json()["detail"], (bad, r.text)
    r = await client.post(
        "/api/queues", json={**q, "name": "o2", "overflow": {"queueId": 99999}}, headers=s["admin"]
    )
    assert r.status_code == 404
    store = app.state.routing_store
    await store.enqueue(
        QueueRouting(id=queue["id"], skills={"technical": 2}),
        "api-caller-1",
        caller="+919812345678",
    )
    entries = (await client.get(f"/api/queues/{queue['id']}/entries", headers=s["agent"])).json()
    assert [e["callSid"] for e in entries["live"]] == ["api-caller-1"]
    assert entries["live"][0]["caller"] != "+919812345678"  # masked
    stats = (await client.get(f"/api/queues/{queue['id']}/stats", headers=s["agent"])).json()
    assert stats["size"] == 1 and stats["agentsAvailable"] >= 0 and "serviceLevel" in stats
    r = await client.delete(f"/api/queues/{queue['id']}", headers=s["admin"])
    assert r.status_code == 409 and "waiting" in r.json()["detail"]
    await store.leave("api-caller-1", "abandoned", release=True)
    assert (
        await client.delete(f"/api/queues/{queue['id']}", headers=s["admin"])
    ).status_code == 204
    assert (await client.get(f"/api/queues/{queue['id']}", headers=s["admin"])).status_code == 404
