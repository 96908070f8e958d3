"""SQLite access for the shop: one connection per thread, pragmas by mode.

Modes (``SHOP_SQLITE_MODE``):
- ``default``: what a fresh SQLite file gives you (rollback journal, synchronous=FULL,
  2 MB page cache, no mmap).
- ``tuned``: WAL, synchronous=NORMAL, a 16 MB page cache per connection, 256 MB mmap,
  temp_store=MEMORY.
The journal mode is stored in the file, so ``prepare_database`` sets it once per server
start (before workers open it); the other pragmas are per connection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

SQLITE_MODES = ("default", "tuned")
JOURNAL_MODES = {"default": "delete", "tuned": "wal"}
CONNECTION_PRAGMAS = {
    "default": (),
    "tuned": (
        "PRAGMA synchronous=NORMAL",
        "PRAGMA cache_size=-16384",
        "PRAGMA mmap_size=268435456",
        "PRAGMA temp_store=MEMORY",
    ),
}
JOURNAL_SWITCH_TRIES = 20
BUSY_TIMEOUT_S = 10.0
REQUIRED_TABLES = {"products", "categories", "customers", "orders", "order_items", "reviews",
                   "carts", "cart_items"}


class DatabaseError(RuntimeError):
    """The shop database is missing or not a seeded shop."""


def check_mode(mode: str) -> str:
    if mode not in SQLITE_MODES:
        raise DatabaseError(f"SHOP_SQLITE_MODE must be one of {', '.join(SQLITE_MODES)}, got {mode!r}")
    return mode


def prepare_database(db_path: Path, mode: str) -> None:
    """Check the file is a seeded shop and set its journal mode for ``mode``."""
    check_mode(mode)
    if not db_path.is_file():
        raise DatabaseError(f"SHOP_DB {db_path} does not exist (run the seed first)")
    with closing(sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as con:
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise DatabaseError(f"SHOP_DB {db_path} cannot be read: {exc}") from exc
        missing = REQUIRED_TABLES - tables
        if missing:
            raise DatabaseError(f"SHOP_DB {db_path} lacks table(s) {', '.join(sorted(missing))}")
        journal = JOURNAL_MODES[mode]
        for attempt in range(JOURNAL_SWITCH_TRIES):  # a reader that is closing may still hold it
            try:
                con.execute(f"PRAGMA journal_mode={journal}").fetchall()
                break
            except sqlite3.Error as exc:
                if attempt == JOURNAL_SWITCH_TRIES - 1:
                    raise DatabaseError(f"cannot set journal_mode={journal} on {db_path}: {exc} "
                                        "(another process holds it open?)") from exc
                time.sleep(0.5)


def connect(db_path: Path, mode: str) -> sqlite3.Connection:
    """A connection in autocommit mode (writes use explicit BEGIN IMMEDIATE)."""
    con = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                          cached_statements=256)
    for pragma in CONNECTION_PRAGMAS[check_mode(mode)]:
        con.execute(pragma).fetchall()
    return con


class Database:
    """Thread-local connections (Starlette runs sync handlers in a thread pool)."""

    def __init__(self, db_path: Path, mode: str = "default") -> None:
        self.db_path = db_path
        self.mode = check_mode(mode)
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = connect(self.db_path, self.mode)
            self._local.con = con
        return con

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection().execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.connection().execute(sql, params)

    def transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    """``with db.transaction():`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Database:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
