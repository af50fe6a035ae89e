"""Real calls through the Exotel and XML endpoints, the real gateway, Temporal and worker."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from e2e_support import make_worker, serve
from sqlalchemy import select
from temporalio.client import Client

from api.main import create_app
from cli.call import Outcome, SimulatedCall
from core.calls import CallOutcome, CallState
from core.config import Settings
from core.db.models import FlowExecution
from core.temporal import (
    CALL_STATUS,
    CALLER_HASH,
    CURRENT_NODE,
    FLOW_ID,
    FLOW_VERSION,
    call_workflow_id,
)

IST = timezone(timedelta(hours=5, minutes=30))
WELCOME = "Welcome to customer support."


def token(settings: Settings) -> str:
    return settings.webhook_token.get_secret_value()


class ExotelCall:
    """One call's Exotel requests, built by hand to control retries and timing."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.http = http
        self.base = f"/api/exotel/{token(settings)}"
        self.sid = f"e2e{uuid.uuid4().hex[:20]}"
        self.clock = datetime.now(IST).replace(microsecond=0)

    def params(self, **extra: str) -> dict[str, str]:
        self.clock += timedelta(seconds=3)
        return {
            "CallSid": self.sid, "CallFrom": "09876543210", "CallTo": "01140000000",
            "Direction": "incoming", "CurrentTime": self.clock.strftime("%Y-%m-%d %H:%M:%S"),
            **extra,
        }

    async def passthru(self, params: dict[str, str]) -> httpx.Response:
        response = await self.http.get(f"{self.base}/passthru", params=params)
        assert response.status_code == 200, response.text
        return response

    async def select(self, **extra: str) -> str:
        return (await self.passthru(self.params(**extra))).json()["select"]

    async def gather_prompt(self) -> str:
        response = await self.http.get(f"{self.base}/gather", params={"CallSid": self.sid})
        assert response.status_code == 200, response.text
        return response.json()["gather_prompt"].get("text", "")

    async def greeting(self) -> str:
        response = await self.http.get(f"{self.base}/greeting", params={"CallSid": self.sid})
        assert response.status_code == 200, response.text
        return response.text


async def execution(sessionmaker, sid: str) -> FlowExecution | None:
    async with sessionmaker() as session:
        return await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == sid))


async def wait_for_end(sessionmaker, sid: str, timeout_s: float = 60) -> FlowExecution:
    for _ in range(int(timeout_s * 10)):
        row = await execution(sessionmaker, sid)
        if row is not None and row.ended_at is not None:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {sid} did not end within {timeout_s}s")


@pytest.fixture(scope="module")
async def worker(client_dc: Client, e2e_settings: Settings, sessionmaker):
    async with make_worker(
        client_dc, e2e_settings.temporal_task_queue, sessionmaker,
        redis_url=e2e_settings.redis_url,
    ):
        yield


async def _tech_agents(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict]:
    agents = (await http.get("/api/agents", params={"team": "tech"}, headers=headers)).json()
    return agents["items"]


async def _set_status(http: httpx.AsyncClient, headers: dict, agents: list[dict], status: str):
    for agent in agents:
        r = await http.put(f"/api/agents/{agent['id']}/status", json={"status": status},
                           headers=headers)
        assert r.status_code == 200, r.text


async def test_ivr_call_digits_2_walks_the_seeded_flow(
    worker, api_url, http, admin_headers, e2e_settings, sessionmaker
):
    """The seeded tech agents sign in; `ivr call --digits 2` reaches one through the queue."""
    tech = await _tech_agents(http, admin_headers)
    assert len(tech) == 2
    await _set_status(http, admin_headers, tech, "available")
    heard: list[str] = []
    call = SimulatedCall(api_url, token(e2e_settings), digits=["2"], echo=heard.append)
    try:
        result = await call.run()
    finally:
        await _set_status(http, admin_headers, tech, "offline")
    assert result.outcome == Outcome.completed, result.error
    text = "\n".join(heard)
    assert WELCOME in text
    assert "For billing, press 1." in text
    assert "You have reached technical support." in text
    dials = [t.dial for t in result.turns if t.dial]
    best = next(a for a in tech if a["skills"]["technical"] == 5)  # skills_based: best match
    assert [d["number"] for d in dials] == [best["phoneNumber"]]
    assert dials[0]["status"] == "completed"
    row = await wait_for_end(sessionmaker, call.call_sid)
    assert row.status == "completed" and row.end_reason == "end_of_flow"
    assert row.path == ["welcome", "main_menu", "tech_info", "tech_queue", "tech_transfer"]
    assert row.agent_id == best["id"] and row.queue_id is not None


async def test_same_webhook_twice_advances_once(worker, http, e2e_settings, client_dc):
    call = ExotelCall(http, e2e_settings)
    first_params = call.params()
    a = (await call.passthru(first_params)).json()
    b = (await call.passthru(first_params)).json()  # Exotel retried the first Passthru
    assert a == b == {"select": "gather"}
    digits = call.params(digits='"2"')
    c = (await call.passthru(digits)).json()
    d = (await call.passthru(digits)).json()
    assert c == d
    state = await client_dc.get_workflow_handle(call_workflow_id(call.sid)).query(
        "state", result_type=CallState
    )
    assert state.turn == 2
    assert [v.node_id for v in state.history][:3] == ["welcome", "main_menu", "tech_info"]
    # Operators find calls in the Temporal UI by these search attributes.
    handle = client_dc.get_workflow_handle(call_workflow_id(call.sid))
    # No tech agent is signed in: the caller holds in the queue until they hang up.
    await http.get(f"{call.base}/status", params={"CallSid": call.sid, "Status": "completed"})
    await handle.result()
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(FLOW_ID) is not None and attributes.get(FLOW_VERSION) >= 1
    assert attributes.get(CURRENT_NODE) == "tech_queue"
    assert attributes.get(CALL_STATUS) == "abandoned"
    assert len(attributes.get(CALLER_HASH) or "") == 16


async def test_hold_polls_are_answered_by_the_api_until_an_agent_is_free(
    worker, http, admin_headers, e2e_settings, client_dc
):
    """A queued caller's returns from hold are answered from Redis (no workflow update, not a
    budget hold) even though Exotel repeats the menu digits on them; once an agent is free for
    the call, the next return goes to the workflow, which dials that agent."""
    tech = await _tech_agents(http, admin_headers)
    await _set_status(http, admin_headers, tech, "offline")
    call = ExotelCall(http, e2e_settings)
    handle = client_dc.get_workflow_handle(call_workflow_id(call.sid))

    async def state() -> CallState:
        return await handle.query("state", result_type=CallState)

    async def back() -> httpx.Response:
        response = await call.passthru(call.params(digits='""'))
        assert response.headers.get("X-IVR-Fallback") != "1"
        return response

    assert await call.select() == "gather"
    # Tech info, position and the callback offer (a one-key gather): no key pressed.
    assert await call.select(digits='"2"') == "gather"
    assert "press 1" in (await call.gather_prompt()).lower()
    assert (await back()).json() == {"select": "say"}  # the workflow's first hold segment
    before = await state()
    assert before.current_node == "tech_queue"
    for _ in range(3):
        assert (await back()).json() == {"select": "say"}
        assert "stay on the line" not in (await call.greeting()).lower()
    assert (await state()).turn == before.turn  # the polls never reached the workflow
    best = next(a for a in tech if a["skills"]["technical"] == 5)
    try:
        await _set_status(http, admin_headers, [best], "available")
        assert (await back()).json() == {"select": "connect"}
        after = await state()
        assert after.turn == before.turn + 1 and after.current_node == "tech_transfer"
    finally:
        await http.get(f"{call.base}/status", params={"CallSid": call.sid, "Status": "completed"})
        await handle.result()
        await _set_status(http, admin_headers, tech, "offline")


async def test_a_caller_holding_on_api_answered_polls_is_kept_then_abandoned_when_gone(
    worker, seeded_db, e2e_settings, client_dc, sessionmaker
):
    """The workflow hears nothing while the API answers hold polls: at its silence deadline it
    asks Redis when the caller was last seen and keeps the call; once the polls stop, the call
    ends as abandoned (Exotel sends nothing for an inbound hang-up)."""
    settings = e2e_settings.model_copy(update={"call_grace_s": 1.0})
    async with serve(create_app(settings)) as url, httpx.AsyncClient(
        base_url=url, timeout=15
    ) as http:
        await temporal_connected(http)
        call = ExotelCall(http, settings)
        handle = client_dc.get_workflow_handle(call_workflow_id(call.sid), result_type=CallOutcome)
        assert await call.select() == "gather"
        assert await call.select(digits='"2"') == "gather"  # info, position, callback offer
        assert await call.select(digits='""') == "say"  # no key: the first hold segment
        # 15 s segments + 1 s grace: keep polling past the first silence deadline.
        for _ in range(6):
            await asyncio.sleep(4)
            assert await call.select(digits='""') == "say"
        description = await handle.describe()
        assert description.status.name == "RUNNING"  # kept: the API saw the caller
        # The caller hangs up: no more polls.
        outcome = await asyncio.wait_for(handle.result(), timeout=90)
        assert (outcome.status, outcome.reason) == ("abandoned", "no_webhook")
        row = await wait_for_end(sessionmaker, call.sid)
        assert row.status == "abandoned"


async def test_later_pieces_of_a_turn_come_from_the_api_not_the_workflow(
    worker, http, e2e_settings, client_dc
):
    """Three wrong keys end the menu in 'goodbye': a Greeting, then the Hangup applet. The
    Hangup is handed out by the API from the turn's stored pieces: no fourth workflow update,
    and a retried Passthru for it gets the same answer."""
    call = ExotelCall(http, e2e_settings)
    assert await call.select() == "gather"
    assert await call.select(digits='"7"') == "gather"
    assert await call.select(digits='"7"') == "gather"
    assert await call.select(digits='"7"') == "say"
    assert "Please call again. Goodbye." in await call.greeting()
    back = call.params(digits='"7"')  # Exotel repeats the last digits on later Passthrus
    assert (await call.passthru(back)).json() == {"select": "hangup"}
    assert (await call.passthru(back)).json() == {"select": "hangup"}
    handle = client_dc.get_workflow_handle(call_workflow_id(call.sid), result_type=CallOutcome)
    outcome = await handle.result()
    assert (outcome.status, outcome.reason, outcome.turns) == ("completed", "no_input", 4)
    state = await handle.query("state", result_type=CallState)
    assert state.turn == 4
    assert state.history[-1].node_id == "goodbye"


async def test_exotel_quirks_reach_the_workflow(worker, http, e2e_settings, client_dc):
    call = ExotelCall(http, e2e_settings)
    assert await call.select() == "gather"
    prompt = await call.gather_prompt()
    assert prompt.startswith(WELCOME)
    # Quoted digits, lower-case parameter names, a +91 number: all the same call.
    params = {k.lower(): v for k, v in call.params(digits='"1"').items()}
    params["callfrom"] = "+919876543210"
    assert (await call.passthru(params)).json() == {"select": "say"}
    state = await client_dc.get_workflow_handle(call_workflow_id(call.sid)).query(
        "state", result_type=CallState
    )
    assert state.variables["caller"] == "+919876543210"
    assert state.variables["last_digits"] == "1"


async def test_silent_caller_mid_greeting_is_abandoned(worker, http, e2e_settings, sessionmaker):
    call = ExotelCall(http, e2e_settings)
    assert await call.select() == "gather"
    # The caller hangs up during the welcome; Exotel sends nothing more.
    row = await wait_for_end(sessionmaker, call.sid, timeout_s=60)
    assert row.status == "abandoned" and row.end_reason == "no_webhook"


async def test_status_callback_ends_the_call_at_once(worker, http, e2e_settings, sessionmaker):
    call = ExotelCall(http, e2e_settings)
    assert await call.select() == "gather"
    response = await http.post(
        f"{call.base}/status", data={"CallSid": call.sid, "Status": "completed"}
    )
    assert response.status_code == 200
    row = await wait_for_end(sessionmaker, call.sid, timeout_s=10)
    assert row.status == "abandoned" and row.end_reason == "caller_hung_up"


async def test_unknown_call_on_applet_is_404(http, e2e_settings):
    response = await http.get(
        f"/api/exotel/{token(e2e_settings)}/gather", params={"CallSid": "nosuchcall123"}
    )
    assert response.status_code == 404
    assert response.json()["error"]


async def test_xml_original_curl_body_returns_welcome(worker, http, e2e_settings):
    response = await http.post(
        "/api/ivr/execute",
        params={"token": token(e2e_settings)},
        json={"CallSid": f"xml{uuid.uuid4().hex[:12]}", "From": "+919876543210",
              "To": "+911234567890", "CallStatus": "ringing"},
    )
    assert response.status_code == 200, response.text
    body = response.text
    assert body.startswith("<?xml") and "<Response>" in body
    assert WELCOME in body and "<Gather" in body


async def test_live_call_keeps_its_version_across_publish_and_rollback(
    worker, http, e2e_settings, admin_headers
):
    flows = (await http.get("/api/flows", headers=admin_headers)).json()["items"]
    main = next(f for f in flows if f["name"] == "Main Customer Support Flow")
    flow_id = main["id"]
    live_before = main["liveVersion"]

    old_call = ExotelCall(http, e2e_settings)
    assert await old_call.select() == "gather"  # pinned to the current live version

    draft = (await http.get(f"/api/flows/{flow_id}", headers=admin_headers)).json()
    for node in draft["nodes"]:
        if node["id"] == "welcome":
            node["config"]["message"] = "Welcome to the NEW support line."
    body = {k: draft[k] for k in ("name", "description", "nodes", "connections")
            if k in draft}
    body["draftRevision"] = draft["draftRevision"]
    if draft.get("entryNode"):
        body["entryNode"] = draft["entryNode"]
    saved = await http.put(f"/api/flows/{flow_id}", json=body, headers=admin_headers)
    assert saved.status_code == 200, saved.text
    published = await http.post(f"/api/flows/{flow_id}/publish", headers=admin_headers)
    assert published.status_code in (200, 201), published.text

    new_call = ExotelCall(http, e2e_settings)
    assert await new_call.select() == "gather"
    assert (await new_call.gather_prompt()).startswith("Welcome to the NEW support line.")

    # The call that started before the publish still runs the old version.
    assert await old_call.select(digits='"0"') == "gather"
    assert (await old_call.gather_prompt()).startswith("For billing")

    rolled = await http.post(
        f"/api/flows/{flow_id}/versions/{live_before}/publish", headers=admin_headers
    )
    assert rolled.status_code in (200, 201), rolled.text
    after = ExotelCall(http, e2e_settings)
    assert await after.select() == "gather"
    assert (await after.gather_prompt()).startswith(WELCOME)


async def temporal_connected(http: httpx.AsyncClient) -> None:
    for _ in range(200):
        if (await http.get("/health")).json()["components"]["temporal"]["status"] == "up":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the API never connected to Temporal")


def own_queue(settings: Settings) -> Settings:
    return settings.model_copy(update={"temporal_task_queue": f"own-{uuid.uuid4().hex[:8]}"})


async def test_budget_fallback_when_no_worker_runs_then_call_goes_on(
    e2e_settings, seeded_db, client_dc, sessionmaker
):
    """Every first turn through the workflow (IVR_API_OPENING off): with no worker the
    caller is held, and the held turn runs once a worker is there."""
    settings = own_queue(e2e_settings).model_copy(update={"api_walks_opening": False})
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        await temporal_connected(http)
        await fallback_then_recovery(http, settings, client_dc, sessionmaker)


async def fallback_then_recovery(http, e2e_settings, client_dc, sessionmaker) -> None:
    call = ExotelCall(http, e2e_settings)
    first = await call.passthru(call.params())
    assert first.json() == {"select": "say"}, first.text
    assert first.headers.get("X-IVR-Fallback") == "1"
    assert "Please stay on the line." in await call.greeting()
    async with make_worker(client_dc, e2e_settings.temporal_task_queue, sessionmaker):
        # The carrier comes back after the hold: the original turn is answered now.
        for _ in range(10):
            response = await call.passthru(call.params())
            if response.headers.get("X-IVR-Fallback") != "1":
                break
        assert response.json() == {"select": "gather"}
        assert (await call.gather_prompt()).startswith(WELCOME)
        state = await client_dc.get_workflow_handle(call_workflow_id(call.sid)).query(
            "state", result_type=CallState
        )
        assert state.turn == 1  # the held turn ran once, not once per retry


async def test_turns_walked_by_the_api_need_no_worker_a_queue_turn_is_held_then_goes_on(
    e2e_settings, seeded_db, client_dc, sessionmaker
):
    """The API walks the seeded flow's opening itself (api.opening) and a wrong key after it
    (from the call's cursor, handed to the workflow by the `walked` signal): the caller hears
    the greeting, the menu and the "not valid" prompt although no worker runs. Key 3 leads to
    a queue, which only the workflow may join: it is held until a worker runs, and then the
    call goes on from the menu, every turn taken once and in order."""
    settings = own_queue(e2e_settings)  # no worker polls this queue until we start one
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        await temporal_connected(http)
        call = ExotelCall(http, settings)
        opening = call.params()
        first = await call.passthru(opening)
        assert first.json() == {"select": "gather"}, first.text
        assert first.headers.get("X-IVR-Fallback") is None
        assert (await call.gather_prompt()).startswith(WELCOME)
        # A carrier retry of the first webhook gets the same answer and starts nothing new.
        again = await call.passthru(opening)
        assert again.json() == {"select": "gather"}
        wrong = call.params(digits='"7"')
        invalid = await call.passthru(wrong)
        assert invalid.headers.get("X-IVR-Fallback") is None
        assert invalid.json() == {"select": "gather"}
        assert "not a valid option" in await call.gather_prompt()
        # Retried, the wrong key is answered the same and walked once (turn 2 below).
        assert (await call.passthru(wrong)).json() == {"select": "gather"}
        keys = await call.passthru(call.params(digits='"3"'))
        assert keys.headers.get("X-IVR-Fallback") == "1"
        async with make_worker(client_dc, settings.temporal_task_queue, sessionmaker):
            for _ in range(10):
                response = await call.passthru(call.params())
                if response.headers.get("X-IVR-Fallback") != "1":
                    break
            assert response.headers.get("X-IVR-Fallback") is None
            handle = client_dc.get_workflow_handle(call_workflow_id(call.sid))
            state = await handle.query("state", result_type=CallState)
            signals = [
                e.workflow_execution_signaled_event_attributes.signal_name
                async for e in handle.fetch_history_events()
                if e.HasField("workflow_execution_signaled_event_attributes")
            ]
        assert state.turn == 3  # the opening, the wrong key, then the held keys once
        assert signals == ["walked"]
        assert [v.node_id for v in state.history][:3] == ["welcome", "main_menu", "general_info"]
        assert state.history[1].port == "3"
        # The wrong key's attempt, noted by the API's walk, is on the menu's visit.
        assert state.history[1].data["failure"] == "invalid"
        assert state.history[1].data["attempt"] == 1


async def test_worker_killed_mid_call_call_completes(
    e2e_settings, seeded_db, worker_env, sessionmaker
):
    settings = own_queue(e2e_settings)
    env = {**worker_env, "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue}
    async with serve(create_app(settings)) as url, httpx.AsyncClient(
        base_url=url, timeout=15
    ) as http:
        await temporal_connected(http)
        await kill_worker_mid_call(http, settings, env, sessionmaker)


async def kill_worker_mid_call(http, e2e_settings, worker_env, sessionmaker) -> None:
    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "worker.py"], env=worker_env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def turn(call: ExotelCall, **extra: str) -> str:
        # Re-sent after holds, exactly as a carrier comes back, until the workflow answers.
        for _ in range(30):
            response = await call.passthru(call.params(**extra))
            if response.headers.get("X-IVR-Fallback") != "1":
                return response.json()["select"]
            extra = {}
        raise AssertionError("the call never got past the hold")

    proc = start_worker()
    try:
        call = ExotelCall(http, e2e_settings)
        assert await turn(call) == "gather"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc = start_worker()
        assert await turn(call, digits='"1"') == "say"  # billing info, from the new worker
        assert "Connecting you to our billing team" in await call.greeting()
        select = await turn(call)
        # No billing agent is signed in: the transfer finds nobody and the flow offers
        # voicemail (agents busy, then a recording), then thanks the caller and hangs up.
        assert select in ("say", "record", "hangup")
        while select != "hangup":
            recorded = {"RecordingUrl": "https://recordings.example/vm.mp3"}
            select = await turn(call, **(recorded if select == "record" else {}))
        row = await wait_for_end(sessionmaker, call.sid, timeout_s=30)
        assert row.status == "completed"
        assert row.path[:3] == ["welcome", "main_menu", "billing_info"]
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_the_api_records_the_start_and_the_first_turn_schedules_no_write(
    worker, http, e2e_settings, sessionmaker, client_dc, redis_url
):
    """The API that started the call writes its row (in progress) and announces it; the
    workflow's first turn schedules no activity of its own, and the final record still lands
    with the call's start data."""
    from temporalio.api.enums.v1 import EventType

    from core.redis import make_redis

    redis = make_redis(redis_url)
    events = redis.pubsub()
    await events.subscribe("ivr:events")
    try:
        call = ExotelCall(http, e2e_settings)
        assert await call.select() == "gather"
        row = None
        for _ in range(100):
            row = await execution(sessionmaker, call.sid)
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row is not None and row.status == "in_progress" and row.ended_at is None
        assert row.caller == "+919876543210" and row.flow_id is not None
        announced = []
        for _ in range(100):
            message = await events.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message and call.sid in message["data"] and "call:started" in message["data"]:
                announced.append(message["data"])
                break
        assert announced, "no call:started for the call"
        history = await client_dc.get_workflow_handle(f"call-{call.sid}").fetch_history()
        assert not [e for e in history.events
                    if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
        await http.post(f"{call.base}/status", data={"CallSid": call.sid, "Status": "completed"})
        ended = await wait_for_end(sessionmaker, call.sid, timeout_s=10)
        assert ended.id == row.id and ended.flow_id == row.flow_id
        assert ended.path[:2] == ["welcome", "main_menu"]
    finally:
        await events.aclose()
        await redis.aclose()
