"""Bearer credential verification, with an optional per-worker TTL cache.

Each request carries ``Authorization: Bearer <client_id>:<secret>``. Without the cache
(``auth_cache_ttl_s`` = 0, the default) every request looks the client up through the
connection pool and re-derives its PBKDF2 hash (~10-15 ms of CPU, in a worker thread).
With a TTL, a client whose secret was verified less than TTL seconds ago is accepted on a
SHA-256 fingerprint of the same secret, with no database call and no PBKDF2 work. A wrong
secret is never cached. The TTL is read per request, so lowering it takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import anyio.to_thread

from reference_workflows.enterprise_api.credentials import parse_bearer, verify_secret
from reference_workflows.enterprise_api.database import Pool
from reference_workflows.enterprise_api.settings import LiveConfig

CLIENT_SQL = "SELECT secret_hash, scopes, active FROM api_clients WHERE client_id = ?"


class AuthError(Exception):
    """The request is not authenticated (the API answers 401)."""


@dataclass(frozen=True)
class Client:
    client_id: str
    scopes: frozenset[str]


class Authenticator:
    def __init__(self, pool: Pool, config: LiveConfig) -> None:
        self.pool = pool
        self.config = config
        self._cache: dict[str, tuple[bytes, Client, float]] = {}
        self.verifications = 0
        self.cache_hits = 0
        self.failures = 0

    def stats(self) -> dict[str, int]:
        return {"verifications": self.verifications, "cache_hits": self.cache_hits,
                "failures": self.failures, "cached_clients": len(self._cache)}

    async def authenticate(self, header: str | None) -> Client:
        parsed = parse_bearer(header)
        if parsed is None:
            self.failures += 1
            raise AuthError("missing or malformed Authorization header (Bearer <client_id>:<secret>)")
        client_id, secret = parsed
        ttl = self.config.auth_cache_ttl_s
        fingerprint = hashlib.sha256(secret.encode()).digest()
        if ttl > 0:
            cached = self._cache.get(client_id)
            if (cached is not None and time.monotonic() - cached[2] < ttl
                    and hmac.compare_digest(cached[0], fingerprint)):
                self.cache_hits += 1
                return cached[1]
        client = await self._verify(client_id, secret)
        if ttl > 0:
            self._cache[client_id] = (fingerprint, client, time.monotonic())
        return client

    async def _verify(self, client_id: str, secret: str) -> Client:
        async with self.pool.session() as s:
            rows = await s.fetchall(CLIENT_SQL, (client_id,))
        if not rows or not rows[0][2]:
            self.failures += 1
            raise AuthError("unknown or inactive API client")
        encoded, scopes = rows[0][0], rows[0][1]
        self.verifications += 1
        if not await anyio.to_thread.run_sync(verify_secret, secret, encoded):
            self.failures += 1
            raise AuthError("invalid API client secret")
        return Client(client_id, frozenset(scopes.split()))
