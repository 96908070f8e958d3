"""PostgreSQL connections for the database agent and index changes.

``describe_error`` turns a psycopg error into one line with the password scrubbed, in case a
server or driver ever echoes it. URLs reach this module as given; what leaves it (observations,
findings, the journal, errors) goes through tasks.db.redact.
"""

from __future__ import annotations

import psycopg

from tasks.db.redact import scrub

APPLICATION_NAME = "perfagents-database-agent"
CONNECT_TIMEOUT_S = 10


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
