"""The Exotel REST client against the fake Exotel over real HTTP: request shapes, typed errors
(never carrying the credentials), and the business-hours hook of the callback activities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fake_exotel import FakeExotel
from pydantic import SecretStr
from sqlalchemy import select

from activities.callbacks import CallbackActivities
from core.callbacks import BusinessHoursQuery
from core.config import Settings
from core.db.models import BusinessHours, Flow
from core.exotel import (
    ExotelAuthError,
    ExotelBadRequest,
    ExotelClient,
    ExotelRateLimited,
    ExotelServerError,
)


@pytest.fixture
def fake(fake_exotel: tuple[FakeExotel, str]) -> FakeExotel:
    fake_ = fake_exotel[0]
    fake_.call_duration_s = 0.0
    return fake_


async def test_connect_into_a_flow_and_agent_first(cb_settings: Settings, fake: FakeExotel):
    async with httpx.AsyncClient(timeout=5) as http:
        client = ExotelClient(cb_settings, http)
        flow = await client.connect_call(
            from_number="+919811100001", caller_id="+918047112233", app_id="99",
            custom_field="cb:1:1", status_callback="https://ivr.example/status",
            time_limit_s=99999, timeout_s=30,
        )
        bridge = await client.connect_call(
            from_number="+919700000001", to_number="+919811100002", caller_id="+918047112233",
        )
        with pytest.raises(ValueError, match="exactly one"):
            await client.connect_call(from_number="+91981", caller_id="x")
    assert flow.sid != bridge.sid and flow.status == "in-progress"
    by_sid = {c.sid: c.form for c in fake.calls.values()}
    assert by_sid[flow.sid]["TimeLimit"] == "14400"  # Exotel's cap
    assert by_sid[flow.sid]["Url"].endswith("/exoml/start_voice/99")
    assert by_sid[bridge.sid]["To"] == "+919811100002" and "Url" not in by_sid[bridge.sid]
    assert "StatusCallback" not in by_sid[bridge.sid]


async def test_typed_errors_without_credentials(cb_settings: Settings, fake: FakeExotel):
    token = cb_settings.exotel_api_token.get_secret_value()
    async with httpx.AsyncClient(timeout=5) as http:
        client = ExotelClient(cb_settings, http)
        fake.throttle_next = 1
        with pytest.raises(ExotelRateLimited) as throttled:
            await client.call_details("whatever")
        assert throttled.value.retryable and throttled.value.created_nothing
        with pytest.raises(ExotelBadRequest) as bad:
            await client.connect_call(from_number="sip:x", to_number="+919811100003",
                                      caller_id="+918047112233")
        assert not bad.value.retryable and bad.value.created_nothing
        assert "Invalid From" in bad.value.message
        fake.garbage_next = 1
        with pytest.raises(ExotelServerError) as garbage:
            await client.send_sms(sender="ACME", to_number="+919811100004", body="hi")
        assert garbage.value.retryable and not garbage.value.created_nothing
        fake.fail_after_place = 1
        with pytest.raises(ExotelServerError) as placed:
            await client.connect_call(from_number="+919811100005", app_id="1",
                                      caller_id="+918047112233")
        assert placed.value.status == 500 and not placed.value.created_nothing
        wrong = cb_settings.model_copy(update={"exotel_api_token": SecretStr("nope-" + token)})
        with pytest.raises(ExotelAuthError) as auth:
            await ExotelClient(wrong, http).call_details("x")
        assert auth.value.status == 401
    for err in (throttled, bad, garbage, placed, auth):
        assert token not in str(err.value) and cb_settings.exotel_api_key.get_secret_value() \
            not in str(err.value)


async def test_find_calls_leaves_live_calls_out_and_filters_by_number(
    cb_settings: Settings, fake: FakeExotel
):
    fake.call_duration_s = 30  # this one stays in progress
    async with httpx.AsyncClient(timeout=5) as http:
        client = ExotelClient(cb_settings, http)
        since = datetime.now(UTC) - timedelta(seconds=5)
        live = await client.connect_call(from_number="+919811100006", app_id="1",
                                         caller_id="+918047112233", custom_field="cb:9:1")
        fake.call_duration_s = 0.0
        done = await client.connect_call(from_number="+919811100007", app_id="1",
                                         caller_id="+918047112233", custom_field="cb:9:2")
        import asyncio

        await asyncio.sleep(0.1)
        mine = await client.find_calls(since=since, from_number="+919811100007")
        ongoing = await client.find_calls(since=since, from_number="+919811100006")
        details = await client.call_details(live.sid)
    assert [(c.sid, c.custom_field, c.status) for c in mine] == [(done.sid, "cb:9:2", "completed")]
    assert ongoing == []  # Exotel's bulk list has no calls in progress
    assert details is not None and details.live


async def test_sms_fields(cb_settings: Settings, fake: FakeExotel):
    async with httpx.AsyncClient(timeout=5) as http:
        sent = await ExotelClient(cb_settings, http).send_sms(
            sender="ACMECO", to_number="+919811100008", body="We will call you back at 4:30 pm.",
            dlt_entity_id="110", dlt_template_id="220", custom_field="cb:5:sms:x",
            status_callback="https://ivr.example/sms-status",
        )
    assert sent.status == "queued" and sent.sid.startswith("sms")
    [sms] = [s for s in fake.sms if s["To"] == "+919811100008"]
    assert sms == {
        "From": "ACMECO", "To": "+919811100008", "Body": "We will call you back at 4:30 pm.",
        "DltEntityId": "110", "DltTemplateId": "220",
        "StatusCallback": "https://ivr.example/sms-status", "CustomField": "cb:5:sms:x",
    }


async def test_business_hours_hook_uses_the_engine(cb_settings: Settings, sessionmaker):
    async with sessionmaker.begin() as session:
        row = BusinessHours(
            name="Callback weekdays", timezone="Asia/Kolkata",
            weekly={day: [{"start": "09:00", "end": "18:00"}]
                    for day in ("mon", "tue", "wed", "thu", "fri")},
        )
        session.add(row)
        await session.flush()
        hours_id = row.id
    async with httpx.AsyncClient() as http:
        acts = CallbackActivities(cb_settings, sessionmaker, http)
        saturday = datetime(2030, 1, 5, 4, 30, tzinfo=UTC)  # 10:00 IST on a Saturday
        closed = await acts.callback_business_hours(
            BusinessHoursQuery(business_hours_id=hours_id, at=saturday))
        tuesday = datetime(2030, 1, 8, 6, 30, tzinfo=UTC)  # 12:00 IST
        opened = await acts.callback_business_hours(
            BusinessHoursQuery(business_hours_id=hours_id, at=tuesday))
        gone = await acts.callback_business_hours(
            BusinessHoursQuery(business_hours_id=999999, at=tuesday))
    assert closed.checked and not closed.open
    assert closed.next_open_at == datetime(2030, 1, 7, 3, 30, tzinfo=UTC)  # Monday 09:00 IST
    assert opened.open and opened.checked
    assert gone.open and not gone.checked


async def test_flow_for_custom_field(sessionmaker, seeded):
    from cb_support import new_callback

    from core.repositories import callbacks as repo

    async with sessionmaker() as session:
        flow_id = await session.scalar(select(Flow.id).limit(1))
    if flow_id is None:
        pytest.skip("no flow in this database")
    settings = Settings()
    start = await new_callback(sessionmaker, settings, flow_id=flow_id)
    async with sessionmaker() as session:
        assert await repo.flow_for_custom_field(session, f"cb:{start.callback_id}:2") == flow_id
        assert await repo.flow_for_custom_field(session, "crm-42") is None
        assert await repo.flow_for_custom_field(session, None) is None
