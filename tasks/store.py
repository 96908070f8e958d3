"""The DuckDB store: one file per project, one writer (the flow run), numbered migrations.

The schema is documented for users in docs/store.md; every table is plain SQL to query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tasks.errors import StoreLockedError

DEFAULT_STORE = Path(".perfagents") / "perfagents.duckdb"

# Numbered migrations: each runs once, atomically with its schema_migrations row.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY, target VARCHAR NOT NULL, scope VARCHAR, flow VARCHAR,
            spec JSON, goals JSON, quality JSON, budget JSON, code_version VARCHAR,
            started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ, status VARCHAR, result JSON);
        CREATE TABLE windows (
            window_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, label VARCHAR NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1, config JSON, change_id VARCHAR,
            started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, duration_s DOUBLE, warmup_s DOUBLE,
            users INTEGER, loadgen_cpu_pct DOUBLE, valid BOOLEAN, reason VARCHAR);
        CREATE TABLE samples (
            window_id VARCHAR NOT NULL, ts DOUBLE NOT NULL, endpoint VARCHAR NOT NULL,
            method VARCHAR, latency_ms DOUBLE, status INTEGER, bytes BIGINT, error VARCHAR);
        CREATE TABLE endpoint_stats (
            window_id VARCHAR NOT NULL, endpoint VARCHAR NOT NULL, requests BIGINT, rps DOUBLE,
            mean_ms DOUBLE, p50_ms DOUBLE, p95_ms DOUBLE, p99_ms DOUBLE, error_rate DOUBLE,
            bytes_mean DOUBLE);
        CREATE TABLE resources (
            window_id VARCHAR NOT NULL, ts DOUBLE NOT NULL, role VARCHAR NOT NULL, pids INTEGER,
            cpu_pct DOUBLE, rss_bytes BIGINT, threads INTEGER, ctx_switches BIGINT, open_files INTEGER);
        CREATE TABLE spans (
            window_id VARCHAR, trace_id VARCHAR, span_id VARCHAR, parent_id VARCHAR, name VARCHAR,
            kind VARCHAR, start_ts DOUBLE, duration_ms DOUBLE, attributes JSON);
        CREATE TABLE findings (
            run_id VARCHAR NOT NULL, window_id VARCHAR, agent VARCHAR NOT NULL, kind VARCHAR NOT NULL,
            location VARCHAR, endpoint VARCHAR, severity VARCHAR, evidence JSON,
            estimated_gain JSON, candidate JSON);
        CREATE TABLE agent_runs (
            window_id VARCHAR NOT NULL, agent VARCHAR NOT NULL, status VARCHAR NOT NULL,
            error VARCHAR, duration_s DOUBLE, observed JSON);
        CREATE TABLE changes (
            change_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, target VARCHAR NOT NULL,
            seq INTEGER, kind VARCHAR NOT NULL, params JSON, description VARCHAR, risk VARCHAR,
            status VARCHAR NOT NULL, reason VARCHAR, effect JSON, undo JSON,
            planned_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
        CREATE TABLE validations (
            window_id VARCHAR NOT NULL, expectation VARCHAR NOT NULL, success BOOLEAN,
            observed JSON, checked_at TIMESTAMPTZ);
        CREATE TABLE costs (
            run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, amount DOUBLE, unit VARCHAR,
            note VARCHAR, ts TIMESTAMPTZ);
        CREATE TABLE target_state (
            target VARCHAR PRIMARY KEY, config JSON, kept_changes JSON, run_id VARCHAR,
            code_version VARCHAR, updated_at TIMESTAMPTZ);
        """,
    ),
]


def now() -> datetime:
    return datetime.now(UTC)


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class Store:
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
            raise
        self._depth = 0
        if not read_only:
            self.migrate()

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
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

    # -- target state (the last kept configuration per target) -----------------------------
    def kept_state(self, target: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM target_state WHERE target = ?", [target])
        if not rows:
            return None
        row = rows[0]
        return {
            "config": json.loads(row["config"] or "{}"),
            "kept_changes": json.loads(row["kept_changes"] or "[]"),
            "run_id": row["run_id"],
            "code_version": row["code_version"],
        }

    def save_kept_state(
        self, target: str, config: Mapping[str, Any], kept_changes: list[dict[str, Any]],
        run_id: str, code_version: str | None = None,
    ) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM target_state WHERE target = ?", [target])
            con.execute(
                "INSERT INTO target_state VALUES (?, ?, ?, ?, ?, ?)",
                [target, dumps(dict(config)), dumps(kept_changes), run_id, code_version, now()],
            )
