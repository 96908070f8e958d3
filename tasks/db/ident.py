"""SQL identifiers, always quoted by a library (psycopg.sql), never pasted into SQL by hand.

PostgreSQL and SQLite share the SQL-standard identifier quoting ("name", embedded quotes
doubled), so psycopg's composer serves both without a connection.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql


def ident(name: str) -> str:
    """One quoted identifier: ``orders`` -> ``"orders"``."""
    return sql.Identifier(name).as_string(None)


def create_index_sql(name: str, table: str, columns: Sequence[str], *, concurrently: bool = False) -> str:
    template = "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})" if concurrently else "CREATE INDEX IF NOT EXISTS {} ON {} ({})"
    return sql.SQL(template).format(
        sql.Identifier(name), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    ).as_string(None)


def drop_index_sql(name: str, *, concurrently: bool = False) -> str:
    template = "DROP INDEX CONCURRENTLY IF EXISTS {}" if concurrently else "DROP INDEX IF EXISTS {}"
    return sql.SQL(template).format(sql.Identifier(name)).as_string(None)
