"""After-hours and logic-node calls through the Exotel endpoints, driven by `ivr call`'s
simulator: HTTP → API → Temporal → worker (real activities) → PostgreSQL."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from e2e_support import OPEN_CLOCK, make_worker, publish_on_number, serve
from sqlalchemy import select
from temporalio.client import Client

from api.main import create_app
from cli.call import Outcome, SimulatedCall
from core.config import Settings, get_settings
from core.db.models import FlowExecution
from core.flows.samples import order_status_flow
from core.seed_business_hours import SUPPORT_HOURS_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "logic"))
from orders_server import OrdersServer

WELCOME = "Welcome to customer support."
CLOSED = "Our support team is available Monday to Saturday, nine AM to six PM."
THANKS = "Thank you. We have received your message"


def token(settings: Settings) -> str:
    return settings.webhook_token.get_secret_value()


async def ended(sessionmaker, sid: str) -> FlowExecution:
    import asyncio

    for _ in range(300):
        async with sessionmaker() as session:
            row = await session.scalar(select(FlowExecution).where(FlowExecution.call_sid == sid))
        if row is not None and row.ended_at is not None:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {sid} did not end")


async def temporal_up(http: httpx.AsyncClient) -> None:
    import asyncio

    for _ in range(200):
        if (await http.get("/health")).json()["components"]["temporal"]["status"] == "up":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the API never connected to Temporal")


async def test_after_hours_call_ends_in_voicemail_and_thank_you(
    e2e_settings, seeded_db, client_dc: Client, sessionmaker
):
    """Monday 20:00 IST by the test clock: the seeded flow's welcome says when support is
    open, takes a voicemail, thanks the caller and hangs up."""
    night = "2026-01-05T20:00:00+05:30"
    settings = e2e_settings.model_copy(  # the API walks the first turn at the same clock
        update={"temporal_task_queue": f"night-{uuid.uuid4().hex[:8]}",
                "business_hours_clock": datetime.fromisoformat(night)}
    )
    async with serve(create_app(settings)) as url, make_worker(
        client_dc, settings.temporal_task_queue, sessionmaker, clock=night,
    ):
        async with httpx.AsyncClient(base_url=url) as http:
            await temporal_up(http)
        heard: list[str] = []
        call = SimulatedCall(url, token(settings), echo=heard.append)
        result = await call.run()
    assert result.outcome == Outcome.completed, result.error
    text = "\n".join(heard)
    for line in (WELCOME, CLOSED, "We open again tomorrow at 9 AM.", THANKS):
        assert line in text, (line, text)
    assert "For billing, press 1" not in text
    # Exotel's Voicemail applet plays its own prompt (the record node's text is not sent to
    # it), records, and comes back with the recording.
    assert [t.applet for t in result.turns] == ["say", "record", "say", "hangup"]
    assert result.turns[1].recording_url
    row = await ended(sessionmaker, call.call_sid)
    assert row.status == "completed" and row.end_reason == "completed"
    assert row.path == ["welcome", "voicemail", "thank_you", "hangup"]
    assert row.recording_url and row.recording_url.startswith("https://recordings.")
    assert row.variables["business_hours_reason"] == "closed"
    assert row.variables["business_hours_next_open"].startswith("2026-01-06T09:00:00")


async def test_override_closes_the_line_for_the_day(
    e2e_settings, seeded_db, client_dc: Client, sessionmaker, http, api_url, admin_headers
):
    """An operator closes today with an override through the REST API; a call at the (open)
    test clock hears the override's message and leaves a voicemail. Removing it reopens."""
    items = (await http.get("/api/business-hours", headers=admin_headers)).json()["items"]
    support = next(i for i in items if i["name"] == SUPPORT_HOURS_NAME)
    original = {k: support[k] for k in ("name", "timezone", "weekly", "holidayCountry",
                                        "holidaySubdivision", "customHolidays", "overrides",
                                        "messages")}
    day = OPEN_CLOCK[:10]
    closed = {**original, "overrides": [
        {"date": day, "closed": True, "message": "We are closed today for the annual audit."}
    ]}
    response = await http.put(f"/api/business-hours/{support['id']}", json=closed,
                              headers=admin_headers)
    assert response.status_code == 200, response.text
    try:
        async with make_worker(client_dc, e2e_settings.temporal_task_queue, sessionmaker):
            heard: list[str] = []
            call = SimulatedCall(api_url, token(e2e_settings), echo=heard.append)
            result = await call.run()
            assert result.outcome == Outcome.completed, result.error
            assert "We are closed today for the annual audit." in "\n".join(heard)
            row = await ended(sessionmaker, call.call_sid)
            assert row.path[:2] == ["welcome", "voicemail"]
            assert row.variables["business_hours_reason"] == "override"
    finally:
        await http.put(f"/api/business-hours/{support['id']}", json=original,
                       headers=admin_headers)
    async with make_worker(client_dc, e2e_settings.temporal_task_queue, sessionmaker):
        heard = []
        again = SimulatedCall(api_url, token(e2e_settings), digits=["0", "0", "0", "0"],
                              echo=heard.append)
        await again.run()
    assert "For billing, press 1" in "\n".join(heard)


@pytest.fixture
def allow_loopback_api(monkeypatch):
    """Publishing checks API hosts against this server's IVR_API_NODE_ALLOWLIST."""
    monkeypatch.setenv("IVR_API_NODE_ALLOWLIST", "127.0.0.1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_order_status_sample_gather_api_decision_over_exotel(
    e2e_settings, seeded_db, client_dc: Client, sessionmaker, http, api_url, admin_headers,
    allow_loopback_api,
):
    """The sample flow on its own number: an order number typed on the keypad, looked up on
    a local order server through the API node, the call branching on the status."""
    orders = OrdersServer()
    async with serve(orders.app()) as orders_url:
        defn = order_status_flow(orders_url=orders_url + "/orders/{{ order_number }}")
        body = {**defn.to_json_dict(), "name": f"Orders {uuid.uuid4().hex[:6]}"}
        number = "+911140009999"
        flow_id = await publish_on_number(http, admin_headers, body, number)

        worker_settings = Settings(env=e2e_settings.env, api_node_allowlist="127.0.0.1")
        async with make_worker(client_dc, e2e_settings.temporal_task_queue, sessionmaker,
                               logic_settings=worker_settings):
            for typed, expected in (("123456#", "has been shipped"),
                                    ("12#", "order numbers have six to ten digits"),
                                    ("999999#", "cannot look up orders")):
                heard: list[str] = []
                call = SimulatedCall(api_url, token(e2e_settings), called=number,
                                     digits=[typed, "222222#"], echo=heard.append)
                result = await call.run()
                assert result.outcome == Outcome.completed, result.error
                text = "\n".join(heard)
                assert "Please enter your order number" in text
                assert expected in text, text
            # The retry after "12" was accepted: 222222 is delivered.
            assert "has been delivered" in text or expected in text
    row = await ended(sessionmaker, call.call_sid)
    assert row.flow_id == flow_id and row.status == "completed"
    assert "lookup" in row.path
