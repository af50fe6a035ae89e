"""The gateway's part in keeping typed secrets out of Temporal, against a real Redis: keys
answering a sensitive gather are sealed in the call vault, keys Exotel repeats after a prompt
are dropped, and a status callback never carries keys to the workflow. The Temporal side is
a recording stand-in: what matters here is exactly what the gateway would send it."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from api.call_gateway import TemporalCallGateway
from core.calls import TurnReply
from core.config import Settings
from core.flows import vault
from core.redis import make_redis
from core.telephony import CallEvent, Dialect, EventKind, Gather, Reply, Say


class _Handle:
    def __init__(self, sent: list[Any]) -> None:
        self.sent = sent

    async def execute_update(self, name: str, event: CallEvent, **_: Any) -> Reply:
        self.sent.append(event)
        return TurnReply(instructions=[Say(text="ok")])

    async def signal(self, name: str, event: CallEvent) -> None:
        self.sent.append(event)


class _Client:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self.sent)


@pytest.fixture
async def gateway(redis_url: str, settings: Settings):
    redis = make_redis(redis_url)
    client = _Client()

    async def no_flow(*_: Any) -> None:
        return None

    yield TemporalCallGateway(client, redis, settings, no_flow), client, redis
    await redis.aclose()


async def _heard(redis: aioredis.Redis, sid: str, reply: Reply) -> None:
    await redis.set(f"call:{sid}:reply", reply.model_dump_json())


def _digits(sid: str, keys: str) -> CallEvent:
    return CallEvent(kind=EventKind.digits, call_sid=sid, digits=keys)


async def test_keys_for_a_sensitive_gather_are_sealed(gateway) -> None:
    gw, client, redis = gateway
    sid = "VAULT1"
    await _heard(redis, sid, Reply(instructions=[Gather(max_digits=19, sensitive=True)]))
    await gw.advance(_digits(sid, "4111111111111111"), update_id="u1",
                     dialect=Dialect.exotel, start=False)
    sent = client.sent[-1]
    assert sent.digits is None and sent.sealed is not None
    assert sent.sealed.masked == "************1111"
    assert "4111111111111111" not in sent.model_dump_json()
    # The value waits in the vault under the reference the workflow got, the same one a
    # carrier retry of this webhook would produce.
    assert sent.sealed.ref == vault.sealed_ref(sid, "u1")
    assert await vault.open_sealed(redis, sid, {sent.sealed.ref}) == {
        sent.sealed.ref: "4111111111111111"
    }
    # The call's end forgets it.
    await gw.end(CallEvent(kind=EventKind.ended, call_sid=sid, digits="4111111111111111"))
    assert client.sent[-1].digits is None
    assert not await redis.exists(vault.vault_key(sid))


async def test_keys_for_an_ordinary_gather_go_through(gateway) -> None:
    gw, client, redis = gateway
    sid = "VAULT2"
    await _heard(redis, sid, Reply(instructions=[Gather(max_digits=1)]))
    await gw.advance(_digits(sid, "2"), update_id="u1", dialect=Dialect.exotel, start=False)
    assert client.sent[-1].digits == "2" and client.sent[-1].sealed is None
    assert not await redis.exists(vault.vault_key(sid))


async def test_keys_repeated_after_a_prompt_are_dropped(gateway) -> None:
    """Exotel repeats the last gather's keys on later requests; after a prompt they answer
    nothing, and they may be the card number typed two turns ago."""
    gw, client, redis = gateway
    sid = "VAULT3"
    await _heard(redis, sid, Reply(instructions=[Say(text="Your card is noted.")]))
    await gw.advance(_digits(sid, "4111111111111111"), update_id="u2",
                     dialect=Dialect.exotel, start=False)
    assert client.sent[-1].digits is None and client.sent[-1].sealed is None


def test_placeholders_are_filled_only_from_the_vault() -> None:
    ref = vault.sealed_ref("S", "u")
    body = {"card": vault.placeholder(ref), "items": [f"x-{vault.placeholder(ref)}", 3]}
    assert vault.placeholders_in(body) == {ref}
    assert vault.fill(body, {ref: "4111"}) == {"card": "4111", "items": ["x-4111", 3]}
    assert vault.placeholders_in({"card": "⟦sealed:not-hex⟧"}) == set()


async def test_a_redis_that_lost_its_scripts_is_reloaded_once(gateway) -> None:
    """The gateway runs its piece script by EVALSHA without asking SCRIPT EXISTS first; a
    restarted Redis (scripts gone) answers NOSCRIPT once and the webhook still goes through."""
    gw, client, redis = gateway
    sid = "VAULT4"
    await _heard(redis, sid, Reply(instructions=[Gather(max_digits=1)]))
    await redis.script_flush()
    await gw.advance(_digits(sid, "3"), update_id="u1", dialect=Dialect.exotel, start=False)
    assert client.sent[-1].digits == "3"
    assert (await redis.script_exists(gw._next_piece.sha)) == [True]
