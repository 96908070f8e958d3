"""PostgreSQL connections for the database agent and index changes, with passwords kept out of sight.

``strip_password`` drops the password from a ``postgresql://`` URL (the userinfo's ``:password``
and a ``password=`` query parameter); every URL that reaches an observation, a finding, the
journal or an error message goes through it. Unlike tasks.spec.redact_url (``u:***@h``, for
display), the result is still a working URL: libpq fills the password in again (below). ``describe_error`` turns a psycopg error into
one line with the password scrubbed, in case a server or driver ever echoes it.

A URL stored without its password is reconnected with libpq's own fallbacks: the
``PGPASSWORD`` environment variable or ``~/.pgpass`` (or a trust/peer rule on the server).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg

APPLICATION_NAME = "perfagents-database-agent"
CONNECT_TIMEOUT_S = 10
POSTGRES_SCHEMES = ("postgresql", "postgres")
REDACTED = "***"


def is_postgres_url(url: str | None) -> bool:
    return url is not None and url.split(":", 1)[0] in POSTGRES_SCHEMES


def url_password(url: str) -> str | None:
    """The password in ``url`` (userinfo or ``password=`` parameter), decoded; None when absent."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        return unquote(userinfo.split(":", 1)[1])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            return value
    return None


def strip_password(url: str) -> str:
    """``postgresql://app:s3cret@h:5432/db?password=x&sslmode=require`` -> ``postgresql://app@h:5432/db?sslmode=require``."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hosts}" if at else hosts
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub(text: str, url: str | None) -> str:
    """``text`` with the URL's password (plain and URL-encoded) replaced by ``***``."""
    secret = url_password(url) if url else None
    if secret:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, REDACTED)
    return text


def describe_error(exc: BaseException, url: str | None = None) -> str:
    """A psycopg error as one line (its first line, SQLSTATE name when known), password scrubbed."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return scrub(lines[0].removeprefix("connection failed: ").strip(), url)


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection:
    """A private connection: autocommit, no automatic server-side prepares, bounded connect.

    Raises psycopg.OperationalError; callers map it with ``describe_error``.
    """
    return psycopg.connect(url, autocommit=autocommit, prepare_threshold=None,
                           connect_timeout=CONNECT_TIMEOUT_S, application_name=APPLICATION_NAME)
