"""Talking to a target's database, below both the agents that read it and the changes that alter it.

    postgres.py   PostgreSQL URLs and connections, passwords kept out of sight (strip_password)
    ident.py      SQL identifiers and index DDL, quoted by psycopg.sql (PostgreSQL and SQLite)
"""

from __future__ import annotations

from tasks.db.ident import create_index_sql, drop_index_sql, ident
from tasks.db.postgres import connect, describe_error, is_postgres_url, strip_password

__all__ = [
    "connect",
    "create_index_sql",
    "describe_error",
    "drop_index_sql",
    "ident",
    "is_postgres_url",
    "strip_password",
]
