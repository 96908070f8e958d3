"""The DuckDB connection, held only while it is used: for one read, or one transaction.

DuckDB allows one read-write process or many read-only ones per file, never both (its file
lock). A run that kept the file open for its whole length locked out the dashboard,
``history`` and every other run; so each read opens the file, reads and closes it, and each
transaction opens it, writes, commits and closes it. A commit lands in DuckDB's WAL and the
file is never checkpointed in place (a killed checkpoint can tear it): the last writer out
folds the WAL in on a copy when it has grown (tasks/store/checkpoint.py). An open that meets
another process's lock waits for it, bounded (tasks/store/lock.py). Within one thread, nested
uses join the open connection: ``with store.transaction():`` makes several calls atomic and
holds the file once for all of them; ``with store.session():`` does the same for several
reads. Threads have their own.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import duckdb
import polars as pl

from tasks.errors import StoreError
from tasks.store.checkpoint import checkpoint_by_copy, needs_checkpoint
from tasks.store.lock import LockWaits, lock_timeout, open_duckdb
from tasks.store.migrations import MIGRATIONS
from tasks.store.turns import turn

DEFAULT_STORE = Path(".perfagents") / "perfagents.duckdb"
log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class Connection:
    """The store's file, opened per use. Use ``with store.transaction():`` for atomic writes."""

    def __init__(self, path: str | Path = DEFAULT_STORE, *, read_only: bool = False,
                 lock_timeout_s: float | None = None) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.lock_timeout_s = lock_timeout() if lock_timeout_s is None else lock_timeout_s
        self.waits = LockWaits()  # what the opens waited for other processes (benchmarks/store_sharing.py)
        self._local = threading.local()
        if read_only and not self.path.is_file():
            raise StoreError(f"store {self.path}: no such file")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.session():
            self._check_ours()
            if not read_only:
                self.migrate()

    def _check_ours(self) -> None:
        """Refuse another DuckDB database (never add our tables to it) and a store from a newer schema."""
        tables = {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if tables and "schema_migrations" not in tables:
            raise StoreError(f"store {self.path} is a DuckDB database but not a perfagents store "
                             f"(it holds {', '.join(sorted(tables)[:3])}...)")
        if "schema_migrations" in tables:
            newest = self.con.execute("SELECT max(version) FROM schema_migrations").fetchall()
            known = max(version for version, _, _ in MIGRATIONS)
            if newest and newest[0][0] is not None and newest[0][0] > known:
                raise StoreError(f"store {self.path} was written by a newer perfagents (schema {newest[0][0]} > {known})")

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This thread's open connection, inside ``session()`` or ``transaction()``."""
        con = getattr(self._local, "con", None)
        if con is None:
            raise StoreError(f"store {self.path} is not open here: use `with store.session():`")
        return con

    def close(self) -> None:
        """Nothing stays open between uses; kept so that ``with Store(...)`` reads as before."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The file open (waiting for another process's lock, bounded) for this block, closed after
        it; nested uses in the same thread join it."""
        local = self._local
        if getattr(local, "con", None) is not None:
            yield local.con
            return
        last_out = None if self.read_only else self._checkpoint
        with turn(self.path, shared=self.read_only, timeout_s=self.lock_timeout_s, last_out=last_out) as waited:
            # past the turn's bound, DuckDB's own lock decides (and names the holder in its error)
            con = open_duckdb(self.path, read_only=self.read_only,
                              timeout_s=self.lock_timeout_s if waited is not None else 0.0,
                              waits=self.waits, waited_before=waited or self.lock_timeout_s)
            local.con, local.tx = con, 0
            try:
                yield con
            finally:
                local.con, local.tx = None, 0
                con.close()

    def _checkpoint(self) -> None:
        """Past its bound, the WAL is folded into the file by a copy (tasks/store/checkpoint.py);
        a failure leaves the store as it was (file + WAL), so it is logged, not raised."""
        if not needs_checkpoint(self.path):
            return
        try:
            checkpoint_by_copy(self.path)
        except (OSError, duckdb.Error) as exc:
            log.warning("store %s: checkpoint by copy failed (%s); the WAL is kept and replayed", self.path, exc)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Commit on success, roll back on error; nested uses join the outer transaction."""
        local = self._local
        if getattr(local, "tx", 0):
            local.tx += 1
            try:
                yield local.con
            finally:
                local.tx -= 1
            return
        with self.session() as con:
            con.begin()
            local.tx = 1
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            else:
                con.commit()
            finally:
                local.tx = 0

    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded in schema_migrations; returns their versions."""
        with self.session() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
            )
            done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
            applied = []
            for version, name, sql in MIGRATIONS:
                if version in done:
                    continue
                with self.transaction() as tx:
                    tx.execute(sql)
                    tx.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, now()])
                applied.append(version)
        return applied

    def has_table(self, name: str) -> bool:
        """Does the store have ``name`` (a store opened read-only before its migration does not)?"""
        return bool(self.rows("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name]))

    def columns(self, table: str) -> set[str]:
        """``table``'s columns (a store opened read-only before a migration may lack new ones)."""
        return {r["column_name"] for r in self.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])}

    # -- generic helpers -------------------------------------------------------------------
    def insert_frame(self, table: str, frame: pl.DataFrame) -> int:
        """Bulk insert a polars frame (via Arrow) into ``table``, matching columns by name."""
        if frame.height == 0:
            return 0
        arrow = frame.to_arrow()  # noqa: F841  (referenced by name in SQL below)
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        with self.session() as con:
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM arrow")
        return frame.height

    def insert_row(self, table: str, row: Mapping[str, Any]) -> None:
        cols = list(row)
        values = [dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
        marks = ", ".join("?" for _ in cols)
        names = ", ".join(f'"{c}"' for c in cols)
        with self.session() as con:
            con.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        with self.session() as con:
            return con.sql(sql, params=params or None).pl()

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.session() as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
