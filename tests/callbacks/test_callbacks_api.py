"""/api/callbacks, the status and SMS webhooks, end to end: the API app under uvicorn, a real
worker on the Temporal dev server, the fake Exotel placing calls and posting their status
callbacks back to the API, which stores them raw and routes them to the callback's workflow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from api_helpers import assert_error, login, serve
from cb_support import WEBHOOK_TOKEN, eventually, load
from fake_exotel import FakeExotel
from sqlalchemy import func, select
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.callback_queue import run_callback_dispatcher
from activities.callbacks import CallbackActivities
from activities.calls import CallActivities
from activities.carrier import CarrierActivities
from activities.logic import LogicActivities
from api.main import create_app
from core.callbacks import QueueDialDone, QueueHold
from core.config import Settings
from core.db.models import (
    Agent,
    AuditLog,
    CarrierStatusEvent,
    Flow,
    FlowExecution,
    Queue,
    SmsCallback,
    VoiceCallback,
)
from core.redis import make_redis
from core.routing.callbacks import READY_LIST, CallbackReady
from core.temporal import with_data_converter
from workflows import WORKFLOWS, workflow_runner

pytestmark = pytest.mark.slow
STATUS = f"/api/exotel/{WEBHOOK_TOKEN}/status"
PASSTHRU = f"/api/exotel/{WEBHOOK_TOKEN}/passthru"
SMS_STATUS = f"/api/exotel/{WEBHOOK_TOKEN}/sms-status"


HELD: list[QueueHold] = []
RELEASED: list[QueueDialDone] = []


@activity.defn(name="callback_queue_hold")
async def hold_double(req: QueueHold) -> bool:
    HELD.append(req)
    return True


@activity.defn(name="callback_queue_release")
async def release_double(done: QueueDialDone) -> None:
    RELEASED.append(done)


@pytest_asyncio.fixture(scope="module")
async def api_url(cb_settings: Settings, seeded: None) -> AsyncIterator[str]:
    async with serve(create_app(cb_settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            for _ in range(200):
                health = (await probe.get("/health")).json()
                if health["components"]["temporal"]["status"] == "up":
                    break
                await asyncio.sleep(0.05)
        yield url


@pytest_asyncio.fixture(scope="module")
async def worker(
    temporal_client: Client, cb_settings: Settings, api_url: str, sessionmaker
) -> AsyncIterator[Settings]:
    """A worker whose status callbacks point at the API (as IVR_PUBLIC_URL would)."""
    settings = cb_settings.model_copy(update={"public_url": api_url})
    async with httpx.AsyncClient(timeout=5) as http, Worker(
        with_data_converter(temporal_client),
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=[
            *CallActivities(sessionmaker).all(),
            *CarrierActivities(settings, http).all(),
            *LogicActivities(settings, sessionmaker, http).all(),
            *CallbackActivities(settings, sessionmaker, http).all(),
            hold_double,
            release_double,
        ],
        workflow_runner=workflow_runner(),
    ):
        yield settings


@pytest_asyncio.fixture(scope="module")
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=20) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def manager(http: httpx.AsyncClient) -> dict[str, str]:
    return (await login(http, "manager", "manager123")).headers


@pytest_asyncio.fixture(scope="module")
async def refs(sessionmaker) -> dict[str, int]:
    """A published flow, an agent with a phone and a queue to point callbacks at."""
    async with sessionmaker.begin() as session:
        flow_id = await session.scalar(
            select(Flow.id).where(Flow.live_version.is_not(None)).order_by(Flow.id).limit(1)
        )
        agent = Agent(name="Callback Agent", phone_number="+919700000042")
        session.add(agent)
        queue = await session.scalar(select(Queue).where(Queue.deleted_at.is_(None)).limit(1))
        if queue is None:
            queue = Queue(name=f"cb-queue-{uuid.uuid4().hex[:6]}")
            session.add(queue)
        await session.flush()
        return {"flow": flow_id, "agent": agent.id, "queue": queue.id}


@pytest.fixture
def fake(fake_exotel: tuple[FakeExotel, str]) -> FakeExotel:
    fake_ = fake_exotel[0]
    fake_.call_duration_s = 0.2
    return fake_


def _soon(minutes: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


async def _done(sessionmaker, callback_id: int, timeout_s: float = 30) -> VoiceCallback:
    async def finished() -> VoiceCallback | None:
        row = await load(sessionmaker, callback_id)
        return row if row.status in ("completed", "failed", "exhausted", "cancelled") else None

    return await eventually(finished, timeout_s)


async def test_asap_flow_callback_dials_and_its_status_callback_is_routed(
    http, manager, worker, refs, fake, sessionmaker
):
    fake.status_callback_copies = 2  # Exotel retries status callbacks: stored and counted once
    body = {"phoneNumber": "09812300001", "asap": True, "flowId": refs["flow"],
            "note": "wants a refund"}
    created = await http.post("/api/callbacks", json=body, headers=manager)
    assert created.status_code == 201, created.text
    cb = created.json()
    assert cb["phoneNumber"] == "+919812300001" and cb["status"] in ("scheduled", "dialing")
    assert cb["workflowId"] == f"callback-{cb['id']}"
    row = await _done(sessionmaker, cb["id"])
    fake.status_callback_copies = 1
    assert row.status == "completed", (row.status, row.last_error)
    [placed] = fake.placed_for(f"cb:{cb['id']}:")
    assert placed["StatusCallback"] == f"{worker.public_url}{STATUS}"
    assert len(row.carrier_events) == 1
    [event] = row.carrier_events
    assert event["customField"] == f"cb:{cb['id']}:1" and event["status"] == "completed"
    assert event["payload"]["CallSid"] == row.attempts[0]["callSid"]
    assert all(code == 200 for url, code in fake.status_posts if url == placed["StatusCallback"])
    detail = (await http.get(f"/api/callbacks/{cb['id']}", headers=manager)).json()
    assert detail["status"] == "completed" and detail["attemptCount"] == 1
    assert detail["attempts"][0]["status"] == "answered"
    assert detail["attempts"][0]["callSid"] == row.attempts[0]["callSid"]
    assert detail["carrierEventCount"] == 1 and detail["completedAt"]


async def test_agent_callback_bridges_the_agent_first(
    http, manager, worker, refs, fake, sessionmaker
):
    body = {"phoneNumber": "+919812300002", "asap": True, "agentId": refs["agent"]}
    cb = (await http.post("/api/callbacks", json=body, headers=manager)).json()
    row = await _done(sessionmaker, cb["id"])
    assert row.status == "completed"
    [placed] = fake.placed_for(f"cb:{cb['id']}:")
    assert (placed["From"], placed["To"]) == ("+919700000042", "+919812300002")
    assert row.attempts[0]["agentId"] == refs["agent"]


async def test_idempotency_key(http, manager, worker, refs, sessionmaker):
    key = f"key-{uuid.uuid4().hex}"
    body = {"phoneNumber": "+919812300003", "scheduledAt": _soon(90), "flowId": refs["flow"]}
    headers = {**manager, "Idempotency-Key": key}
    first = await http.post("/api/callbacks", json=body, headers=headers)
    again = await http.post("/api/callbacks", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = await http.post("/api/callbacks", json={**body, "note": "changed"}, headers=headers)
    assert_error(other, 409, "conflict")
    assert "Idempotency-Key" in other.json()["detail"]
    no_key = await http.post("/api/callbacks", json=body, headers=manager)
    assert no_key.status_code == 201 and no_key.json()["id"] != first.json()["id"]
    async with sessionmaker() as session:
        rows = await session.scalar(
            select(func.count()).select_from(VoiceCallback)
            .where(VoiceCallback.idempotency_key == key)
        )
        audits = await session.scalar(
            select(func.count()).select_from(AuditLog).where(
                AuditLog.action == "callback.create",
                AuditLog.entity_id == str(first.json()["id"]),
            )
        )
    assert (rows, audits) == (1, 1)
    for cb_id in (first.json()["id"], no_key.json()["id"]):
        assert (await http.delete(f"/api/callbacks/{cb_id}", headers=manager)).status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "mentions"),
    [
        ({"phoneNumber": "12"}, 422, "phoneNumber"),
        ({"phoneNumber": "not a number"}, 422, "phoneNumber"),
        ({"scheduledAt": "2020-01-01T10:00:00+05:30"}, 422, "scheduledAt"),
        ({"scheduledAt": "2030-01-01T10:00:00"}, 422, "scheduledAt"),  # no offset
        ({"scheduledAt": "2099-01-01T10:00:00+00:00"}, 422, "scheduledAt"),  # too far ahead
        ({"asap": True}, 422, "scheduledAt"),  # both a time and asap
        ({"scheduledAt": None}, 422, "asap"),  # neither
        ({"maxAttempts": 11}, 422, "maxAttempts"),
        ({"maxAttempts": 0}, 422, "maxAttempts"),
        ({"retryDelaySeconds": -5}, 422, "retryDelaySeconds"),
        ({"flowId": 999999}, 422, "flowId"),
        ({"flowId": None, "agentId": 999999}, 422, "agentId"),
        ({"flowId": None, "queueId": 999999}, 422, "queueId"),
        ({"agentId": 1}, 422, "agentId"),  # two targets
        ({"flowId": None}, 422, "flowId"),  # no target
        ({"businessHoursId": 999999}, 422, "businessHoursId"),
        ({"colour": "blue"}, 422, "colour"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    http, manager, refs, change: dict[str, Any], status: int, mentions: str
):
    body = {"phoneNumber": "+919812300009", "scheduledAt": _soon(), "flowId": refs["flow"]}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = await http.post("/api/callbacks", json=body, headers=manager)
    error = assert_error(response, status)
    assert mentions in error["detail"], error


async def test_bad_requests_elsewhere(http, manager, refs):
    assert_error(await http.get("/api/callbacks/999999", headers=manager), 404, "not_found")
    assert_error(await http.get("/api/callbacks?cursor=garbage", headers=manager), 400)
    assert "status" in assert_error(
        await http.get("/api/callbacks?status=lost", headers=manager), 422
    )["detail"]
    assert_error(await http.get(
        "/api/callbacks", params={"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"},
        headers=manager,
    ), 422)
    assert_error(await http.patch("/api/callbacks/1", json={}, headers=manager), 422)
    malformed = await http.post("/api/callbacks", content=b"{", headers={
        **manager, "content-type": "application/json"})
    assert_error(malformed, 400, "malformed_json")
    too_long = {**manager, "Idempotency-Key": "k" * 200}
    assert_error(await http.post("/api/callbacks", json={}, headers=too_long), 422)


async def test_roles(http, refs):
    agent = (await login(http, "agent", "agent123")).headers
    assert_error(await http.get("/api/callbacks", headers=agent), 403, "forbidden")
    body = {"phoneNumber": "+919812300010", "asap": True, "flowId": refs["flow"]}
    assert_error(await http.post("/api/callbacks", json=body, headers=agent), 403)
    assert_error(await http.get("/api/callbacks"), 401)


async def test_reschedule_and_cancel(http, manager, worker, refs, fake, sessionmaker):
    body = {"phoneNumber": "+919812300004", "scheduledAt": _soon(120), "flowId": refs["flow"],
            "maxAttempts": 2}
    cb = (await http.post("/api/callbacks", json=body, headers=manager)).json()
    later = datetime.now(UTC) + timedelta(hours=5)
    moved = await http.patch(f"/api/callbacks/{cb['id']}", headers=manager,
                             json={"scheduledAt": later.isoformat(), "maxAttempts": 4})
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["scheduledAt"]) == later
    assert moved.json()["maxAttempts"] == 4
    past = await http.patch(f"/api/callbacks/{cb['id']}", headers=manager,
                            json={"scheduledAt": "2020-01-01T00:00:00Z"})
    assert "scheduledAt" in assert_error(past, 422)["detail"]
    cancelled = await http.delete(f"/api/callbacks/{cb['id']}", headers=manager)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert fake.placed_for(f"cb:{cb['id']}:") == []
    again = await http.delete(f"/api/callbacks/{cb['id']}", headers=manager)
    assert "cancelled" in assert_error(again, 409, "conflict")["detail"]
    late = await http.patch(f"/api/callbacks/{cb['id']}", headers=manager, json={"asap": True})
    assert_error(late, 409, "conflict")


async def test_list_filters_and_keyset_pages(http, manager, worker, refs):
    ids = []
    for n in range(3):
        body = {"phoneNumber": f"+91981230010{n}", "scheduledAt": _soon(60 * 24 + n),
                "flowId": refs["flow"]}
        ids.append((await http.post("/api/callbacks", json=body, headers=manager)).json()["id"])
    page1 = (await http.get("/api/callbacks", headers=manager,
                            params={"status": "scheduled", "limit": 2})).json()
    assert [i["id"] for i in page1["items"]][:2] == sorted(ids, reverse=True)[:2]
    assert page1["nextCursor"]
    page2 = (await http.get("/api/callbacks", headers=manager, params={
        "status": "scheduled", "limit": 2, "cursor": page1["nextCursor"]})).json()
    assert page2["items"][0]["id"] == min(ids)
    ranged = (await http.get("/api/callbacks", headers=manager, params={
        "from": (datetime.now(UTC) + timedelta(hours=23)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(hours=25)).isoformat()})).json()
    assert sorted(i["id"] for i in ranged["items"]) == sorted(ids)
    queued = (await http.get("/api/callbacks", headers=manager,
                             params={"queueId": refs["queue"]})).json()
    assert all(i["queueId"] == refs["queue"] for i in queued["items"])
    for cb_id in ids:
        await http.delete(f"/api/callbacks/{cb_id}", headers=manager)


async def test_status_callback_form_for_a_callback_is_stored_and_routed(
    http, manager, worker, refs, sessionmaker, temporal_client
):
    body = {"phoneNumber": "+919812300005", "scheduledAt": _soon(300), "flowId": refs["flow"]}
    cb = (await http.post("/api/callbacks", json=body, headers=manager)).json()
    form = {"CallSid": "CAformstatus1", "Status": "busy", "CustomField": f"cb:{cb['id']}:1",
            "From": "+919812300005", "To": "08047112233", "Direction": "outbound-api"}
    first = await http.post(STATUS, data=form)
    again = await http.post(STATUS, data=form)
    assert first.status_code == again.status_code == 200
    row = await load(sessionmaker, cb["id"])
    assert [e["payload"] for e in row.carrier_events] == [form]
    stored = await _status_events(sessionmaker, "CAformstatus1")
    assert [(e.callback_id, e.custom_field, e.status, e.payload) for e in stored] == [
        (cb["id"], f"cb:{cb['id']}:1", "busy", form)]
    # An unrelated call's status, or a CustomField that is not ours, touches no callback.
    other = await http.post(STATUS, json={"CallSid": "CAother", "Status": "completed",
                                          "CustomField": "crm-123"})
    assert other.status_code == 200
    assert_error(await http.post(STATUS, data={"Status": "completed"}), 400)
    await http.delete(f"/api/callbacks/{cb['id']}", headers=manager)


async def _status_events(sessionmaker, call_sid: str) -> list[CarrierStatusEvent]:
    async with sessionmaker() as session:
        return list((await session.scalars(
            select(CarrierStatusEvent).where(CarrierStatusEvent.call_sid == call_sid)
            .order_by(CarrierStatusEvent.id))).all())


async def test_inbound_call_status_callback_is_stored_raw_once_and_ends_the_call(
    http, worker, sessionmaker
):
    """An ordinary inbound call (no callback's CustomField): its status callback lands raw in
    carrier_status_events (JSON whole, nested Legs too), Exotel's retry of it is stored once,
    and it still ends the call's workflow."""
    sid = f"CAinbound{uuid.uuid4().hex[:16]}"
    first_turn = await http.get(PASSTHRU, params={
        "CallSid": sid, "CallFrom": "09812300040", "CallTo": "08047112233",
        "Direction": "incoming", "CurrentTime": "2026-11-28 10:00:00"})
    assert first_turn.status_code == 200, first_turn.text

    async def running() -> FlowExecution | None:
        async with sessionmaker() as session:
            return await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == sid))

    assert (await eventually(running)).status == "in_progress"
    body = {"CallSid": sid, "EventType": "terminal", "Status": "completed",
            "From": "09812300040", "To": "08047112233", "Direction": "inbound",
            "ConversationDuration": 0, "RecordingUrl": None,
            "Legs": [{"Status": "completed", "OnCallDuration": 12}]}
    first = await http.post(STATUS, json=body)
    retry = await http.post(STATUS, json=body)
    assert (first.status_code, retry.status_code) == (200, 200), (first.text, retry.text)
    [event] = await _status_events(sessionmaker, sid)
    assert event.payload == body
    assert (event.carrier, event.status, event.custom_field, event.callback_id) == (
        "exotel", "completed", None, None)
    # A later, different callback for the same call is another event.
    assert (await http.post(STATUS, data={"CallSid": sid, "Status": "completed"})).status_code \
        == 200
    assert len(await _status_events(sessionmaker, sid)) == 2

    async def ended() -> FlowExecution | None:
        async with sessionmaker() as session:
            row = await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == sid))
        return row if row is not None and row.status != "in_progress" else None

    execution = await eventually(ended)
    assert execution.end_reason in ("caller_hung_up", "completed"), execution.end_reason


async def test_sms_status_reports_are_stored(http, sessionmaker):
    report = {"SmsSid": "SMabc123", "To": "09812300006", "Status": "sent",
              "DetailedStatus": "DELIVERED_TO_HANDSET", "DetailedStatusCode": "20005",
              "SmsUnits": "1", "DateSent": "2026-11-28 10:00:00"}
    response = await http.post(SMS_STATUS, data=report)
    assert response.status_code == 200, response.text
    async with sessionmaker() as session:
        row = await session.scalar(select(SmsCallback).where(SmsCallback.sms_sid == "SMabc123"))
    assert row is not None
    assert (row.to_number, row.status, row.detailed_status) == (
        "+919812300006", "sent", "DELIVERED_TO_HANDSET")
    assert row.payload["DetailedStatusCode"] == "20005"
    assert_error(await http.post(SMS_STATUS, data={"Status": "sent"}), 400)
    assert_error(await http.post(SMS_STATUS, data={"SmsSid": "x y", "Status": "sent"}), 400)
    assert_error(await http.post(SMS_STATUS, data={"SmsSid": "S1", "Status": "lost"}), 400)
    assert_error(await http.post("/api/exotel/wrong/sms-status", data=report), 403)


async def test_queue_offer_handed_off_by_the_routing_engine_is_dialled_agent_first(
    worker, refs, fake, sessionmaker, temporal_client, cb_settings
):
    """A request the queue's offer recorded (no workflow yet) reaches an agent: the routing
    engine's hand-off on `callbacks:ready` starts its workflow by signal, which holds the
    agent, dials agent-first with the agent's phone from the table, then releases the agent."""
    async with sessionmaker.begin() as session:  # what routing's create_queue_callback writes
        row = VoiceCallback(phone_number="+919812300020", status="scheduled", asap=True,
                            queue_id=refs["queue"], queue_position=3,
                            source_call_sid="CAoffer20", agent_id=refs["agent"])
        session.add(row)
        await session.flush()
        callback_id = row.id
    redis = make_redis(cb_settings.redis_url)
    ready = CallbackReady(callback_id=callback_id, agent_id=refs["agent"], lease="lease-20",
                          queue_id=refs["queue"], call_sid="CAoffer20")
    await redis.lpush(READY_LIST, ready.model_dump_json())
    stop = asyncio.Event()
    dispatcher = asyncio.create_task(run_callback_dispatcher(
        worker, with_data_converter(temporal_client), stop, sessionmaker=sessionmaker,
        redis=redis,
    ))
    try:
        row = await _done(sessionmaker, callback_id)
    finally:
        stop.set()
        await dispatcher
        await redis.aclose()
    assert row.status == "completed", row.last_error
    [placed] = fake.placed_for(f"cb:{callback_id}:")
    assert (placed["From"], placed["To"]) == ("+919700000042", "+919812300020")
    assert [h.reservation_id for h in HELD] == ["lease-20"]
    [released] = [r for r in RELEASED if r.callback_id == callback_id]
    assert (released.reservation_id, released.outcome, released.queue_id) == (
        "lease-20", "answered", refs["queue"])
    assert row.queue_position == 3 and row.source_call_sid == "CAoffer20"


async def test_flow_callback_call_runs_the_callbacks_flow_through_our_webhooks(
    http, manager, worker, api_url, fake, sessionmaker
):
    """The fake drives the placed call into our Exotel Passthru (Direction=outbound-api,
    CustomField): the call gateway runs the callback's flow, not the ExoPhone's."""
    from core.db.models import FlowExecution

    async with sessionmaker() as session:
        flows = (await session.scalars(
            select(Flow.id).where(Flow.live_version.is_not(None)).order_by(Flow.id))).all()
    flow_id = flows[-1]  # not the default flow, which the ExoPhone would get
    fake.passthru_url = f"{api_url}/api/exotel/{WEBHOOK_TOKEN}/passthru"
    try:
        body = {"phoneNumber": "+919812300030", "asap": True, "flowId": flow_id}
        cb = (await http.post("/api/callbacks", json=body, headers=manager)).json()
        row = await _done(sessionmaker, cb["id"])
    finally:
        fake.passthru_url = None
    assert row.status == "completed"
    sid = row.attempts[0]["callSid"]
    [call] = [c for c in fake.calls.values() if c.sid == sid]
    assert call.passthru and call.passthru[0]["status"] == 200, call.passthru

    async def executed():
        async with sessionmaker() as session:
            return await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == sid))

    execution = await eventually(executed)
    assert (execution.flow_id, execution.direction) == (flow_id, "outbound")
