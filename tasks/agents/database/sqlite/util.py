"""SQLite helpers for the database agent: find the file, open it read-only, quote checked names.

Identifiers are quoted by tasks.db.ident (psycopg.sql: the SQL-standard rule SQLite documents,
``"`` doubled inside ``"..."``) and only after they were found in the database's own schema.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tasks.db.ident import ident
from tasks.db.url import sqlite_path, url_scheme
from tasks.errors import RefusedError, SpecError

BUSY_TIMEOUT_S = 5.0


def database_file(url: str, base_dir: Path | None = None) -> Path:
    """``sqlite:///rel.db`` / ``sqlite:////abs.db`` -> the database file (relative to ``base_dir``)."""
    path = sqlite_path(url)
    if path is None:
        raise SpecError(f"not a sqlite:/// database file URL: {url_scheme(url)}://...")
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.resolve()


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection: EXPLAIN and schema reads can never change the target's database."""
    if not Path(path).is_file():
        raise SpecError(f"database file {path} does not exist")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)


def table_columns(con: sqlite3.Connection, table: str) -> list[str]:
    """The columns of ``table`` in declaration order ([] when there is no such table)."""
    return [row[0] for row in con.execute("SELECT name FROM pragma_table_info(?)", [table]).fetchall()]


def table_names(con: sqlite3.Connection) -> list[str]:
    rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return [row[0] for row in rows.fetchall()]


def quote_ident(name: str) -> str:
    """One quoted identifier (``a"b`` -> ``"a""b"``); check it exists first (checked_table)."""
    return ident(name)


def checked_table(con: sqlite3.Connection, table: str, columns: list[str] | None = None) -> tuple[str, list[str]]:
    """Quoted ``table`` and ``columns``, after checking them against the schema; else RefusedError."""
    have = table_columns(con, table)
    if not have:
        raise RefusedError(f"table {table!r} does not exist")
    missing = [c for c in columns or [] if c not in have]
    if missing:
        raise RefusedError(f"table {table!r} has no column {missing[0]!r}")
    return quote_ident(table), [quote_ident(c) for c in columns or []]


@dataclass(frozen=True)
class IndexInfo:
    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool
    origin: str  # c = CREATE INDEX, u = UNIQUE constraint, pk = PRIMARY KEY
    partial: bool


def list_indexes(con: sqlite3.Connection) -> list[IndexInfo]:
    """Every index of every table, with its columns (expression columns show as '<expr>')."""
    out: list[IndexInfo] = []
    for table in table_names(con):
        for _seq, name, unique, origin, partial in con.execute(
            "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?)", [table]
        ).fetchall():
            cols = con.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", [name]).fetchall()
            columns = tuple(c[0] if c[0] is not None else "<expr>" for c in cols)
            out.append(IndexInfo(name, table, columns, bool(unique), origin, bool(partial)))
    return out
