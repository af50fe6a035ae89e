"""The call vault: what a caller types into a sensitive Gather Input, kept out of Temporal.

A carrier webhook brings the keys a caller pressed in clear. If the prompt they answer is a
sensitive gather (a card or account number, a PIN), the API seals them here before anything is
sent to the workflow: the digits go into a per-call Redis hash (expiring with the call, dropped
when it ends) and the workflow receives only a reference and the masked form. Workflow history,
the `state` query, node records and logs therefore never hold the value; the activities that
need it (validating it, an API node sending it on) read it back by reference.

The placeholder helpers are pure (the workflow renders API node templates with a placeholder
where a sealed value goes; the `call_api` activity puts the value back just before sending).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import redis.asyncio as aioredis

# As long as a call may last (the gateway's reply TTL): a call that outlives it re-asks.
VAULT_TTL_S = 6 * 3600
_PLACEHOLDER = re.compile(r"\u27e6sealed:([0-9a-f]{8,64})\u27e7")


def vault_key(call_sid: str) -> str:
    return f"call:{call_sid}:vault"


def sealed_ref(call_sid: str, update_id: str) -> str:
    """The reference of the digits one webhook brought: the same for a carrier retry of that
    webhook (same update id), so a retried or re-sent update carries the same reference."""
    return hashlib.sha256(f"{call_sid}\x00{update_id}".encode()).hexdigest()[:24]


def placeholder(ref: str) -> str:
    """Where a sealed value goes in a rendered API request (never a character a template or a
    caller's keypad produces)."""
    return f"\u27e6sealed:{ref}\u27e7"


def placeholders_in(value: Any) -> set[str]:
    """Every reference named by a placeholder in `value` (a string, or JSON made of them)."""
    found: set[str] = set()
    _walk(value, lambda text: found.update(_PLACEHOLDER.findall(text)) or text)
    return found


def fill(value: Any, values: dict[str, str]) -> Any:
    """`value` with every placeholder replaced by its sealed value (`values`: ref → text)."""
    return _walk(value, lambda text: _PLACEHOLDER.sub(lambda m: values[m.group(1)], text))


def _walk(value: Any, on_text: Any) -> Any:
    if isinstance(value, str):
        return on_text(value)
    if isinstance(value, dict):
        return {_walk(k, on_text): _walk(v, on_text) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, on_text) for v in value]
    return value


async def seal(redis: aioredis.Redis, call_sid: str, ref: str, value: str) -> None:
    """Keep `value` for this call under `ref` (overwrites: a validated value replaces the raw
    keys under the same reference)."""
    key = vault_key(call_sid)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, ref, value)
        pipe.expire(key, VAULT_TTL_S)
        await pipe.execute()


async def open_sealed(redis: aioredis.Redis, call_sid: str, refs: set[str]) -> dict[str, str]:
    """The sealed values of `refs` that are still kept (a missing one has expired or the vault
    was lost with Redis)."""
    if not refs:
        return {}
    ordered = sorted(refs)
    values = await redis.hmget(vault_key(call_sid), ordered)
    return {
        ref: (v.decode() if isinstance(v, bytes) else v)
        for ref, v in zip(ordered, values, strict=True)
        if v is not None
    }


async def drop(redis: aioredis.Redis, call_sid: str) -> None:
    """Forget everything the caller typed on this call (the call is over)."""
    await redis.delete(vault_key(call_sid))


__all__ = [
    "VAULT_TTL_S",
    "drop",
    "fill",
    "open_sealed",
    "placeholder",
    "placeholders_in",
    "seal",
    "sealed_ref",
    "vault_key",
]
