"""CallbackWorkflow on the time-skipping test server (hours of waiting take milliseconds), with
the real activities against the test database and the fake Exotel over real HTTP.

No API runs here, so status callbacks go nowhere: each attempt's outcome is settled the way a
lost status callback is, by asking Exotel (call details) once the call's time is up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from cb_support import WEBHOOK_TOKEN, eventually, load, new_callback
from fake_exotel import FakeExotel
from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.callbacks import EVENTS_CHANNEL, CallbackActivities
from core.callbacks import (
    AGENT_RESERVED_SIGNAL,
    CANCEL_SIGNAL,
    RESCHEDULE_UPDATE,
    STATUS_QUERY,
    AgentReserved,
    BusinessHoursAnswer,
    BusinessHoursQuery,
    CallbackMode,
    CallbackOutcome,
    CallbackStart,
    CallbackState,
    QueueDialDone,
    RescheduleRequest,
)
from core.config import Settings
from core.db.models import SmsCallback, VoiceCallback
from core.redis import make_redis
from core.temporal import callback_workflow_id, with_data_converter
from workflows import workflow_runner
from workflows.callback import CallbackWorkflow

CLOSED_UNTIL: dict[int, datetime] = {}  # business-hours double: closed until, per schedule id
RELEASED: list[QueueDialDone] = []


@activity.defn(name="callback_business_hours")
async def business_hours_double(query: BusinessHoursQuery) -> BusinessHoursAnswer:
    opens = CLOSED_UNTIL.get(query.business_hours_id)
    if opens is not None and query.at < opens:
        return BusinessHoursAnswer(open=False, next_open_at=opens, reason="closed")
    return BusinessHoursAnswer(open=True)


@activity.defn(name="test_release_agent")
async def release_double(done: QueueDialDone) -> None:
    RELEASED.append(done)


@pytest_asyncio.fixture(scope="module")
async def ts_worker(
    time_skipping_env: WorkflowEnvironment, cb_settings: Settings, sessionmaker
) -> AsyncIterator[tuple[WorkflowEnvironment, Client, str]]:
    client = with_data_converter(time_skipping_env.client)
    task_queue = f"cb-ts-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=5) as http:
        acts = CallbackActivities(cb_settings, sessionmaker, http)
        registered = [a for a in acts.all() if a != acts.callback_business_hours]
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[CallbackWorkflow],
            activities=[*registered, business_hours_double, release_double],
            workflow_runner=workflow_runner(),
        ):
            yield time_skipping_env, client, task_queue


async def _start(client: Client, tq: str, start: CallbackStart):
    return await client.start_workflow(
        CallbackWorkflow.run, start, id=callback_workflow_id(start.callback_id), task_queue=tq
    )


@pytest.fixture
def fake(fake_exotel: tuple[FakeExotel, str]) -> FakeExotel:
    fake_ = fake_exotel[0]
    fake_.call_duration_s = 0.0
    return fake_


async def test_scheduled_callback_waits_for_its_time_then_dials_once(
    ts_worker, fake, cb_settings: Settings, sessionmaker
):
    env, client, tq = ts_worker
    at = (await env.get_current_time()) + timedelta(hours=2)
    start = await new_callback(sessionmaker, cb_settings, scheduled_at=at, phone="+919800000001")
    redis = make_redis(cb_settings.redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(EVENTS_CHANNEL)
    handle = await _start(client, tq, start)
    state = await handle.query(STATUS_QUERY, result_type=CallbackState)
    assert state.status == "scheduled" and state.next_attempt_at == at
    assert fake.placed_for(f"cb:{start.callback_id}:") == []
    outcome = await handle.result()
    assert isinstance(outcome, CallbackOutcome)
    assert (outcome.status, outcome.attempts) == ("completed", 1)
    [placed] = fake.placed_for(f"cb:{start.callback_id}:")
    # Into a flow: the customer is rung first and put into the Exotel app.
    assert placed["From"] == "+919800000001" and "To" not in placed
    assert placed["Url"] == f"http://my.exotel.com/{fake.sid}/exoml/start_voice/424242"
    assert placed["CallerId"] == cb_settings.exotel_caller_id
    assert placed["CustomField"] == f"cb:{start.callback_id}:1"
    assert placed["StatusCallback"].endswith(f"/api/exotel/{WEBHOOK_TOKEN}/status")
    assert placed["StatusCallbackContentType"] == "application/json"
    assert placed["StatusCallbackEvents[0]"] == "terminal"
    assert placed["TimeLimit"] == "60" and placed["TimeOut"] == "5"
    row = await load(sessionmaker, start.callback_id)
    assert row.status == "completed" and row.completed_at is not None
    [attempt] = row.attempts
    assert attempt["status"] == "answered" and attempt["callSid"].startswith("fake")
    assert datetime.fromisoformat(attempt["startedAt"]) >= at
    events: list[str] = []
    for _ in range(40):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is None:
            continue
        body = json.loads(message["data"])
        if body["event"] == "callback:update" and body["data"]["callbackId"] == start.callback_id:
            assert body["room"] == "analytics"  # managers' room on the Socket.IO bridge
            assert body["data"]["phoneNumber"] == "+91******0001"
            events.append(body["data"]["event"])
    assert events[0] == "scheduled" and "dialing" in events and events[-1] == "completed"
    await pubsub.aclose()
    await redis.aclose()


async def test_retries_back_off_up_to_max_attempts(ts_worker, fake, cb_settings, sessionmaker):
    _, client, tq = ts_worker
    phone = "+919800000002"
    fake.outcomes[phone] = ["no-answer", "busy", "no-answer"]
    start = await new_callback(sessionmaker, cb_settings, phone=phone, max_attempts=3,
                               retry_delay_s=600)
    outcome = await (await _start(client, tq, start)).result()
    assert (outcome.status, outcome.attempts) == ("exhausted", 3)
    assert len(fake.placed_for(f"cb:{start.callback_id}:")) == 3
    row = await load(sessionmaker, start.callback_id)
    assert row.status == "exhausted"
    assert [a["status"] for a in row.attempts] == ["no-answer", "busy", "no-answer"]
    assert [a["customField"] for a in row.attempts] == [
        f"cb:{start.callback_id}:{n}" for n in (1, 2, 3)
    ]
    starts = [datetime.fromisoformat(a["startedAt"]) for a in row.attempts]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # 600 s after the first failure, then doubled; each gap also holds the attempt's own wait.
    assert 600 <= gaps[0] < 1200 and 1200 <= gaps[1] < 2400, gaps
    assert "no-answer" in (row.last_error or "")


async def test_closed_business_hours_move_the_dial_to_the_next_opening(
    ts_worker, fake, cb_settings, sessionmaker
):
    env, client, tq = ts_worker
    now = await env.get_current_time()
    opens = now + timedelta(hours=14)
    CLOSED_UNTIL[77] = opens
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000003",
                               scheduled_at=now + timedelta(minutes=5), business_hours_id=77)
    outcome = await (await _start(client, tq, start)).result()
    assert outcome.status == "completed"
    row = await load(sessionmaker, start.callback_id)
    assert datetime.fromisoformat(row.attempts[0]["startedAt"]) >= opens
    # The row shows the moved time while it waited.
    assert row.scheduled_at == opens


async def test_reschedule_then_cancel_never_dials(ts_worker, fake, cb_settings, sessionmaker):
    env, client, tq = ts_worker
    now = await env.get_current_time()
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000004",
                               scheduled_at=now + timedelta(hours=5))
    handle = await _start(client, tq, start)
    later = now + timedelta(hours=8)
    state = await handle.execute_update(
        RESCHEDULE_UPDATE, RescheduleRequest(scheduled_at=later, max_attempts=5),
        result_type=CallbackState,
    )
    assert state.next_attempt_at == later and state.max_attempts == 5
    row = await load(sessionmaker, start.callback_id)
    assert row.scheduled_at == later and row.max_attempts == 5 and row.status == "scheduled"
    with pytest.raises(WorkflowUpdateFailedError):  # neither a time nor asap
        await handle.execute_update(RESCHEDULE_UPDATE, RescheduleRequest(),
                                    result_type=CallbackState)
    await env.sleep(3600)
    await handle.signal(CANCEL_SIGNAL)
    outcome = await handle.result()
    assert (outcome.status, outcome.attempts) == ("cancelled", 0)
    assert fake.placed_for(f"cb:{start.callback_id}:") == []
    assert (await load(sessionmaker, start.callback_id)).status == "cancelled"


async def test_reschedule_to_asap_dials_now(ts_worker, fake, cb_settings, sessionmaker):
    env, client, tq = ts_worker
    now = await env.get_current_time()
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000005",
                               scheduled_at=now + timedelta(days=3))
    handle = await _start(client, tq, start)
    await handle.execute_update(RESCHEDULE_UPDATE, RescheduleRequest(asap=True),
                                result_type=CallbackState)
    outcome = await handle.result()
    assert outcome.status == "completed"
    row = await load(sessionmaker, start.callback_id)
    assert datetime.fromisoformat(row.attempts[0]["startedAt"]) < now + timedelta(hours=1)


async def test_queue_callback_keeps_its_place_until_an_agent_is_reserved(
    ts_worker, fake, cb_settings, sessionmaker
):
    _, client, tq = ts_worker
    customer, agent = "+919800000006", "+919700000001"
    start = await new_callback(sessionmaker, cb_settings, phone=customer,
                               mode=CallbackMode.queue, queue_id=None, queue_position=4)
    async with sessionmaker.begin() as session:  # as the queue's callback offer records it
        row = await session.get(VoiceCallback, start.callback_id)
        row.queue_position, row.source_call_sid = 4, "CAqueue1"
    handle = await _start(client, tq, start)
    await asyncio.sleep(0.5)  # no agent reserved: no dial, however long it waits
    state = await handle.query(STATUS_QUERY, result_type=CallbackState)
    assert state.status == "waiting_in_queue" and state.attempts == []
    assert fake.placed_for(f"cb:{start.callback_id}:") == []
    await handle.signal(
        AGENT_RESERVED_SIGNAL,
        AgentReserved(agent_id=1, agent_number=agent, reservation_id="lease-1",
                      release_activity="test_release_agent"),
    )
    outcome = await handle.result()
    assert outcome.status == "completed"
    [placed] = fake.placed_for(f"cb:{start.callback_id}:")
    assert (placed["From"], placed["To"]) == (agent, customer)  # agent first, then customer
    assert "Url" not in placed
    [released] = [r for r in RELEASED if r.callback_id == start.callback_id]
    assert (released.reservation_id, released.outcome) == ("lease-1", "answered")
    row = await load(sessionmaker, start.callback_id)
    assert (row.status, row.queue_position, row.source_call_sid) == ("completed", 4, "CAqueue1")


async def test_throttled_dial_is_retried_and_placed_once(ts_worker, fake, cb_settings,
                                                         sessionmaker):
    _, client, tq = ts_worker
    fake.throttle_connect = 2
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000007")
    outcome = await (await _start(client, tq, start)).result()
    assert outcome.status == "completed"
    assert len(fake.placed_for(f"cb:{start.callback_id}:")) == 1
    assert fake.throttle_connect == 0


async def test_carrier_error_after_placing_is_not_dialled_twice(
    ts_worker, fake, cb_settings, sessionmaker
):
    _, client, tq = ts_worker
    fake.fail_after_place = 1  # Exotel placed the call, then answered 500
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000008")
    outcome = await (await _start(client, tq, start)).result()
    assert outcome.status == "completed"
    assert len(fake.placed_for(f"cb:{start.callback_id}:")) == 1
    row = await load(sessionmaker, start.callback_id)
    assert row.attempts[0]["callSid"] == next(
        c.sid for c in fake.calls.values() if c.form.get("CustomField") == f"cb:{row.id}:1"
    )


async def test_refused_number_fails_the_callback_with_the_reason(
    ts_worker, fake, cb_settings, sessionmaker
):
    _, client, tq = ts_worker
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000009",
                               mode=CallbackMode.queue)
    handle = await _start(client, tq, start)
    await handle.signal(AGENT_RESERVED_SIGNAL,
                        AgentReserved(agent_id=1, agent_number="sip:agent@pbx"))
    outcome = await handle.result()
    assert outcome.status == "failed" and "Invalid From number" in outcome.reason
    row = await load(sessionmaker, start.callback_id)
    assert row.status == "failed" and "400" in (row.last_error or "")
    assert row.attempts[0]["status"] == "failed"


async def test_queue_callback_sms_says_when_it_is_your_turn(ts_worker, fake, cb_settings,
                                                            sessionmaker):
    """A queue callback has no time to promise: the callback_queued text instead."""
    _, client, tq = ts_worker
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000011",
                               mode=CallbackMode.queue, send_sms=True, queue_position=4)
    handle = await _start(client, tq, start)

    def sent() -> list[dict[str, str]]:
        return [s for s in fake.sms if s["To"] == "+919800000011"]

    [sms] = await eventually(sent)
    await handle.signal(CANCEL_SIGNAL)
    assert (await handle.result()).status == "cancelled"
    assert sms["Body"] == cb_settings.sms_callback_queued_template
    assert sms["CustomField"] == f"cb:{start.callback_id}:sms:callback_queued"
    assert sms["DltTemplateId"] == "1107000000000001"  # no per-kind id: the default


async def test_sms_sent_when_scheduled_with_dlt_fields(ts_worker, fake, cb_settings,
                                                       sessionmaker):
    env, client, tq = ts_worker
    at = datetime(2030, 1, 15, 11, 0, tzinfo=UTC)  # 4:30 pm in Kolkata
    now = await env.get_current_time()
    at = at if at > now else now + timedelta(hours=1)
    start = await new_callback(sessionmaker, cb_settings, phone="+919800000010",
                               scheduled_at=at, send_sms=True)
    outcome = await (await _start(client, tq, start)).result()
    assert outcome.status == "completed"
    [sms] = [s for s in fake.sms if s["To"] == "+919800000010"]
    assert sms["From"] == "ACMECO"
    assert sms["DltEntityId"] == "1101234567890" and sms["DltTemplateId"] == "1107000000000001"
    assert sms["Body"].startswith("We will call you back at ")
    if at.year == 2030:
        assert sms["Body"] == "We will call you back at 4:30 pm on 15 Jan."
    assert sms["CustomField"] == f"cb:{start.callback_id}:sms:callback_scheduled"
    assert sms["StatusCallback"].endswith("/sms-status")
    async with sessionmaker() as session:
        rows = (await session.scalars(
            select(SmsCallback).where(SmsCallback.callback_id == start.callback_id)
        )).all()
    assert [(r.to_number, r.status) for r in rows] == [("+919800000010", "queued")]

