"""A sensitive Gather Input over the Exotel endpoints: the card number a caller types reaches
the API node's server, and nothing else — not the workflow's history, not its state, not the
database, not Redis once the call is over (HTTP → API → call vault → Temporal → worker)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from e2e_support import make_worker, publish_on_number, serve
from sqlalchemy import select
from temporalio.client import Client
from test_logic_calls import ended

from cli.call import Outcome, SimulatedCall
from core.config import Settings, get_settings
from core.db.models import NodeExecution
from core.flows.vault import vault_key
from core.temporal import call_workflow_id

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "logic"))
from orders_server import OrdersServer

CARD = "4111111111111111"  # a Luhn-valid test card
BAD_CARD = "4111111111111112"
NUMBER = "+911140007777"


def node(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "name": node_id, "config": config}


def conn(src: str, port: str, dst: str) -> dict[str, str]:
    return {"fromNode": src, "port": port, "toNode": dst}


def card_flow(echo_url: str) -> dict[str, Any]:
    return {
        "name": f"Cards {uuid.uuid4().hex[:6]}",
        "entryNode": "welcome",
        "nodes": [
            node("welcome", "welcome", message="Welcome to card services."),
            node("card", "gather", message="Please enter your card number.", inputType="luhn",
                 minLength=12, maxLength=19, finishOnKey="#", saveToVariable="card",
                 sensitive=True, confirm=True, maxRetries=2,
                 invalidMessage="That card number is not valid."),
            node("charge", "api", url=echo_url, method="POST", timeout=2,
                 body={"card": "{{ card }}", "caller": "{{ caller }}"}),
            node("noted", "play", message="Card {{ card }} noted."),
            node("failed", "play", message="We could not reach the bank."),
            node("bye", "hangup", message="Goodbye."),
            node("no_card", "hangup", message="No valid card. Goodbye.", reason="no_input"),
        ],
        "connections": [
            conn("welcome", "next", "card"), conn("card", "valid", "charge"),
            conn("card", "invalid", "no_card"), conn("card", "timeout", "no_card"),
            conn("charge", "success", "noted"), conn("charge", "error", "failed"),
            conn("charge", "timeout", "failed"), conn("noted", "next", "bye"),
            conn("failed", "next", "bye"),
        ],
    }


@pytest.fixture
def allow_loopback_api(monkeypatch):
    monkeypatch.setenv("IVR_API_NODE_ALLOWLIST", "127.0.0.1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def token(settings: Settings) -> str:
    return settings.webhook_token.get_secret_value()


async def test_card_number_reaches_the_api_and_nothing_else(
    e2e_settings, seeded_db, client_dc: Client, sessionmaker, http, api_url, admin_headers,
    allow_loopback_api, redis_url,
):
    bank = OrdersServer()
    async with serve(bank.app()) as bank_url:
        await publish_on_number(http, admin_headers, card_flow(bank_url + "/echo"), NUMBER)

        worker_settings = Settings(env=e2e_settings.env, api_node_allowlist="127.0.0.1")
        async with make_worker(client_dc, e2e_settings.temporal_task_queue, sessionmaker,
                               redis_url=redis_url, logic_settings=worker_settings):
            heard: list[str] = []
            # A mistyped card first (bad checksum), then the right one, confirmed with 1.
            call = SimulatedCall(api_url, token(e2e_settings), called=NUMBER,
                                 digits=[BAD_CARD + "#", CARD + "#", "1"], echo=heard.append)
            result = await call.run()
            assert result.outcome == Outcome.completed, result.error
            row = await ended(sessionmaker, call.call_sid)
            history = await client_dc.get_workflow_handle(
                call_workflow_id(call.call_sid)).fetch_history()

    text = "\n".join(heard)
    assert "That card number is not valid." in text
    assert "You entered a number ending in 1 1 1 1. Press 1 to confirm" in text, text
    assert "Card ************1111 noted." in text
    # The API node's server got the real number: the point of asking for it.
    assert json.loads(bank.last["body"]) == {"card": CARD, "caller": row.variables["caller"]}

    # Neither card, nor even the mistyped one, is anywhere in the workflow's history...
    events = [str(e) for e in history.events]
    assert events and not [e for e in events if CARD in e or BAD_CARD in e]
    # ... which holds the vault reference and the mask instead.
    assert any("************1111" in e for e in events)
    # Nor in the database.
    async with sessionmaker() as session:
        visits = (await session.execute(select(NodeExecution).where(
            NodeExecution.execution_id == row.id))).scalars().all()
    stored = json.dumps(row.variables) + json.dumps([v.data for v in visits])
    assert CARD not in stored and BAD_CARD not in stored
    assert row.variables["card"] == "************1111"
    assert row.path == ["welcome", "card", "charge", "noted", "bye"]
    # The vault went with the call.
    redis = aioredis.from_url(redis_url)
    try:
        assert not await redis.exists(vault_key(call.call_sid))
    finally:
        await redis.aclose()
