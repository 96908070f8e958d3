"""The DuckDB connection: open (mapping a held lock to ``StoreLockedError``), migrate,
transactions, and the generic bulk-insert and query helpers the domain methods build on."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import duckdb
import polars as pl

from tasks.errors import StoreError, StoreLockedError
from tasks.store.migrations import MIGRATIONS

DEFAULT_STORE = Path(".perfagents") / "perfagents.duckdb"


def now() -> datetime:
    return datetime.now(UTC)


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class Connection:
    """Owns the DuckDB connection. Use ``with store.transaction():`` for atomic writes."""

    def __init__(self, path: str | Path = DEFAULT_STORE, *, read_only: bool = False) -> None:
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(f"store {self.path} is in use by another perfagents process") from exc
            raise StoreError(f"store {self.path}: {_first_line(exc)}") from exc
        except (duckdb.Error, OSError) as exc:
            raise StoreError(f"store {self.path}: {_first_line(exc)}") from exc
        self._depth = 0
        try:
            self._check_ours()
            if not read_only:
                self.migrate()
        except BaseException:
            self.con.close()
            raise

    def _check_ours(self) -> None:
        """Refuse another DuckDB database (never add our tables to it) and a store from a newer schema."""
        tables = {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if tables and "schema_migrations" not in tables:
            raise StoreError(f"store {self.path} is a DuckDB database but not a perfagents store "
                             f"(it holds {', '.join(sorted(tables)[:3])}...)")
        if "schema_migrations" in tables:
            newest = self.con.execute("SELECT max(version) FROM schema_migrations").fetchone()
            known = max(version for version, _, _ in MIGRATIONS)
            if newest and newest[0] is not None and newest[0] > known:
                raise StoreError(f"store {self.path} was written by a newer perfagents (schema {newest[0]} > {known})")

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Commit on success, roll back on error; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.con
            finally:
                self._depth -= 1
            return
        self.con.begin()
        self._depth = 1
        try:
            yield self.con
        except BaseException:
            self.con.rollback()
            raise
        else:
            self.con.commit()
        finally:
            self._depth = 0

    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded in schema_migrations; returns their versions."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
        )
        done = {row[0] for row in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        applied = []
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            with self.transaction() as con:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, now()])
            applied.append(version)
        return applied

    # -- generic helpers -------------------------------------------------------------------
    def insert_frame(self, table: str, frame: pl.DataFrame) -> int:
        """Bulk insert a polars frame (via Arrow) into ``table``, matching columns by name."""
        if frame.height == 0:
            return 0
        arrow = frame.to_arrow()  # noqa: F841  (referenced by name in SQL below)
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        self.con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM arrow")
        return frame.height

    def insert_row(self, table: str, row: Mapping[str, Any]) -> None:
        cols = list(row)
        values = [dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
        marks = ", ".join("?" for _ in cols)
        names = ", ".join(f'"{c}"' for c in cols)
        self.con.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        return self.con.sql(sql, params=params or None).pl()

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
