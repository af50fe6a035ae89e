"""Passwords (argon2id) and tokens (JWT access tokens, opaque refresh tokens).

Access tokens are short-lived signed JWTs checked without a database round trip for the
signature; the user behind them is still loaded per request, so a disabled user is out at once.
Refresh tokens are random strings; only their SHA-256 is stored, so a database leak does not
hand out sessions.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.config import Settings
from core.errors import Unauthorized

ACCESS_TOKEN_TYPE = "access"  # noqa: S105  (a claim value, not a secret)
_CLOCK_LEEWAY_S = 5
_REQUIRED_CLAIMS = ["sub", "role", "type", "iat", "exp", "jti"]

# argon2-cffi's defaults follow RFC 9106's low-memory profile (argon2id, 64 MiB, t=3).
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; any malformed or foreign hash is simply a mismatch."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


# Hashing costs ~0.1-0.3 s of CPU: keep it off the event loop.
async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


@cache
def dummy_password_hash() -> str:
    """A real hash of nothing anyone knows: verifying against it costs what a real check costs,
    so an unknown username answers no faster than a wrong password."""
    return hash_password(secrets.token_urlsafe(24))


# --- access tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    role: str
    jti: str
    issued_at: datetime
    expires_at: datetime


def create_access_token(
    *, user_id: int, role: str, settings: Settings, now: datetime | None = None
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    ttl_s = settings.access_token_ttl_s
    claims = {
        "sub": str(user_id),
        "role": role,
        "type": ACCESS_TOKEN_TYPE,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl_s),
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm
    )
    return token, ttl_s


def decode_access_token(token: str, settings: Settings) -> AccessClaims:
    """The claims of a valid access token; raises Unauthorized for anything else."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            # Pinning the algorithm list is what stops "alg": "none" and key-confusion tricks.
            algorithms=[settings.jwt_algorithm],
            options={"require": _REQUIRED_CLAIMS},
            leeway=_CLOCK_LEEWAY_S,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid token") from exc
    if claims.get("type") != ACCESS_TOKEN_TYPE:
        raise Unauthorized("wrong token type")
    try:
        user_id = int(claims["sub"])
        return AccessClaims(
            user_id=user_id,
            role=str(claims["role"]),
            jti=str(claims["jti"]),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (TypeError, ValueError) as exc:
        raise Unauthorized("invalid token") from exc


# --- refresh tokens --------------------------------------------------------------------------

REFRESH_TOKEN_BYTES = 32


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> str:
    # A fast hash is right here: the token has 256 bits of entropy, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


# --- login throttling ------------------------------------------------------------------------

# Sliding window of failure timestamps per (username, ip), in a sorted set, using Redis's own
# clock so every API replica agrees. Atomic as scripts; the set never grows past the limit
# because a blocked caller's attempts are not checked, so not recorded.
_THROTTLE_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then return 0 end
local entry = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
local wait = tonumber(entry[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""
_THROTTLE_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
"""


class LoginThrottle:
    """At most `max_failures` failed logins per (username, client IP) in any `window_s`.

    Keyed on the pair, not the username alone, so an attacker cannot lock a real user out
    from everywhere, and a real user's success elsewhere does not reset an attacker's count.
    """

    def __init__(self, redis: Any, *, max_failures: int, window_s: int) -> None:
        self._redis = redis
        self._max = max_failures
        self._window_ms = window_s * 1000

    @staticmethod
    def key(username: str, ip: str | None) -> str:
        digest = hashlib.sha256(f"{username.lower()}\x00{ip or '-'}".encode()).hexdigest()[:40]
        return f"ivr:login-failures:{digest}"

    async def retry_after_s(self, username: str, ip: str | None) -> int:
        """Seconds until this pair may try again; 0 when not blocked."""
        script = self._redis.register_script(_THROTTLE_CHECK)
        wait_ms = int(
            await script(keys=[self.key(username, ip)], args=[self._window_ms, self._max])
        )
        return 0 if wait_ms <= 0 else math.ceil(wait_ms / 1000)

    async def record_failure(self, username: str, ip: str | None) -> int:
        """Count one failure; returns the failures now inside the window."""
        script = self._redis.register_script(_THROTTLE_RECORD)
        return int(
            await script(keys=[self.key(username, ip)], args=[self._window_ms, uuid.uuid4().hex])
        )

    async def reset(self, username: str, ip: str | None) -> None:
        await self._redis.delete(self.key(username, ip))
