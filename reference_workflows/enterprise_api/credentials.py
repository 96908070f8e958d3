"""API client credentials: deterministic ids and secrets, PBKDF2-SHA256 hashes.

Every seeded client ``client-NN`` has the secret ``derive_secret("client-NN")`` (an HMAC of
its id under a fixed, public key), so the load generator can compute the credentials of
any seeded client without reading the database. Only the PBKDF2 hash is stored; checking
a presented secret costs ``HASH_ITERATIONS`` rounds of SHA-256 (~10-15 ms here), which is
the per-request cost the auth cache knob removes.

Standard library only: the locustfile imports this module.
"""

from __future__ import annotations

import hashlib
import hmac

N_CLIENTS = 20
CLIENT_ID_FORMAT = "client-{:02d}"
SECRET_KEY = b"perfagents-enterprise-api-reference-only"  # public: these are test credentials
HASH_ALGORITHM = "pbkdf2_sha256"
HASH_ITERATIONS = 60_000
SALT_BYTES = 16


def client_ids(n: int = N_CLIENTS) -> list[str]:
    """The ids of the seeded API clients."""
    return [CLIENT_ID_FORMAT.format(i) for i in range(1, n + 1)]


def derive_secret(client_id: str) -> str:
    """The secret of a seeded client (32 hex characters)."""
    return hmac.new(SECRET_KEY, client_id.encode(), hashlib.sha256).hexdigest()[:32]


def bearer_token(client_id: str) -> str:
    """The ``Authorization`` header value for a seeded client."""
    return f"Bearer {client_id}:{derive_secret(client_id)}"


def hash_secret(secret: str, salt: bytes, iterations: int = HASH_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`` (Django-like encoding)."""
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"{HASH_ALGORITHM}${iterations}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` matches the stored ``encoded`` hash (constant-time compare)."""
    try:
        algorithm, iterations, salt_hex, digest_hex = encoded.split("$")
        salt, expected, rounds = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex), int(iterations)
    except ValueError:
        return False
    if algorithm != HASH_ALGORITHM or rounds < 1:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, rounds)
    return hmac.compare_digest(digest, expected)


def parse_bearer(header: str | None) -> tuple[str, str] | None:
    """``Bearer <client_id>:<secret>`` -> (client_id, secret); None when malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    client_id, sep, secret = token.strip().partition(":")
    if scheme.lower() != "bearer" or not sep or not client_id or not secret:
        return None
    return client_id, secret
