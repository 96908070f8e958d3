"""Cumulative PostgreSQL statistics, snapshotted at both ends of a window and turned into deltas.

Sources: ``pg_stat_statements`` (per statement: calls, execution time, rows, shared buffer
hits/reads, temp blocks), ``pg_stat_user_tables`` (sequential vs index scans),
``pg_stat_user_indexes`` (index use) and ``pg_stat_database`` (buffer hit ratio, temp files).
Counters only grow, so a window is ``after - before``; a statement whose counters went
down was reset or evicted in between and counts from zero. The window's standard deviation
is recovered from the two (calls, mean, stddev) triples: sum of squares = calls * (stddev² + mean²).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tasks.agents.database.sql.text import statement_kind
from tasks.db.postgres import describe_error

WORKLOAD_KINDS = frozenset({"select", "with", "insert", "update", "delete", "merge", "values", "table"})
MONITORING = re.compile(r"\bpg_[a-z_]+|\binformation_schema\b|\bhypopg", re.IGNORECASE)  # catalog / agent queries
STATEMENT_COUNTERS = ("calls", "total_exec_time", "rows", "shared_blks_hit", "shared_blks_read",
                      "shared_blks_dirtied", "temp_blks_read", "temp_blks_written")
TABLE_COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd", "n_tup_del")
INDEX_COUNTERS = ("idx_scan", "idx_tup_read", "idx_tup_fetch")
DATABASE_COUNTERS = ("blks_hit", "blks_read", "temp_files", "temp_bytes", "xact_commit", "xact_rollback",
                     "deadlocks", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted")

_EXTENSION_SCHEMA = ("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                     "WHERE e.extname = %s")
_STATEMENTS = ("SELECT * FROM {} WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
_TABLES = """
SELECT t.relid, t.schemaname, t.relname, t.seq_scan, t.seq_tup_read, coalesce(t.idx_scan, 0) AS idx_scan,
       coalesce(t.idx_tup_fetch, 0) AS idx_tup_fetch, t.n_tup_ins, t.n_tup_upd, t.n_tup_del, t.n_live_tup,
       c.reltuples, pg_relation_size(t.relid) AS size_bytes
FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid
"""
_INDEXES = """
SELECT s.indexrelid, s.relid, s.schemaname, s.relname, s.indexrelname, s.idx_scan, s.idx_tup_read,
       s.idx_tup_fetch, i.indisunique, i.indisprimary, i.indisvalid, i.indpred IS NOT NULL AS partial,
       array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS columns,
       pg_relation_size(s.indexrelid) AS size_bytes,
       EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid) AS constraint_backed
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
"""
_DATABASE = f"SELECT {', '.join(DATABASE_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"


@dataclass
class Snapshot:
    taken_at: float
    statements: dict[tuple[Any, ...], dict[str, Any]] | None  # None: pg_stat_statements unavailable
    tables: dict[int, dict[str, Any]]
    indexes: dict[int, dict[str, Any]]
    database: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def quiet_session(con: psycopg.Connection) -> None:
    """Keep the agent's own statements out of pg_stat_statements (superuser only; else filtered)."""
    try:
        con.execute("SELECT set_config('pg_stat_statements.track', 'none', false)")
    except psycopg.Error:
        pass


def _statements(con: psycopg.Connection) -> tuple[dict[tuple[Any, ...], dict[str, Any]] | None, str | None]:
    row = con.execute(_EXTENSION_SCHEMA, ["pg_stat_statements"]).fetchone()
    if row is None:
        return None, ("pg_stat_statements is not installed in this database "
                      "(CREATE EXTENSION pg_stat_statements; it needs shared_preload_libraries)")
    try:
        with con.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sql.SQL(_STATEMENTS).format(sql.Identifier(row[0], "pg_stat_statements"))).fetchall()
    except psycopg.Error as exc:
        return None, f"pg_stat_statements cannot be read: {describe_error(exc)}"
    out = {}
    for r in rows:
        if r.get("queryid") is None:  # another user's statement, hidden from us
            continue
        out[(r["userid"], r["queryid"], r.get("toplevel", True))] = r
    return out, None


def take_snapshot(con: psycopg.Connection) -> Snapshot:
    """One reading of every source (a few milliseconds on a small catalogue)."""
    taken_at = time.time()
    statements, note = _statements(con)
    with con.cursor(row_factory=dict_row) as cur:
        tables = {r["relid"]: r for r in cur.execute(_TABLES).fetchall()}
        indexes = {r["indexrelid"]: r for r in cur.execute(_INDEXES).fetchall()}
        database = cur.execute(_DATABASE).fetchone() or {}
    return Snapshot(taken_at, statements, tables, indexes, dict(database), [note] if note else [])


def _diff(after: dict[str, Any], before: dict[str, Any] | None, counters: tuple[str, ...]) -> dict[str, float]:
    if before is None:
        return {c: float(after.get(c) or 0) for c in counters}
    return {c: float(after.get(c) or 0) - float(before.get(c) or 0) for c in counters}


def _sum_squares(row: dict[str, Any]) -> float:
    calls, mean, std = float(row["calls"]), float(row.get("mean_exec_time") or 0), float(row.get("stddev_exec_time") or 0)
    return calls * (std * std + mean * mean)


def is_workload(text: str) -> bool:
    """A DML statement of the target, not a utility command nor a catalogue / monitoring query."""
    return statement_kind(text) in WORKLOAD_KINDS and not MONITORING.search(text)


def statement_deltas(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    """Per statement over the window (workload statements only), by total time, longest first."""
    out = []
    for key, row in (after.statements or {}).items():
        prev = (before.statements or {}).get(key)
        if prev is not None and row["calls"] < prev["calls"]:
            prev = None  # reset or evicted and re-entered during the window
        d = _diff(row, prev, STATEMENT_COUNTERS)
        calls = int(d["calls"])
        if calls <= 0 or not is_workload(row["query"]):
            continue
        mean = d["total_exec_time"] / calls
        squares = _sum_squares(row) - (_sum_squares(prev) if prev is not None else 0.0)
        std = math.sqrt(max(squares / calls - mean * mean, 0.0))
        touched = d["shared_blks_hit"] + d["shared_blks_read"]
        out.append({
            "queryid": row["queryid"], "statement": row["query"], "calls": calls,
            "total_ms": d["total_exec_time"], "mean_ms": mean, "stddev_ms": std, "rows": int(d["rows"]),
            "rows_mean": d["rows"] / calls, "shared_blks_hit": int(d["shared_blks_hit"]),
            "shared_blks_read": int(d["shared_blks_read"]),
            "hit_ratio": d["shared_blks_hit"] / touched if touched else None,
            "temp_blks_written": int(d["temp_blks_written"]), "temp_blks_read": int(d["temp_blks_read"]),
        })
    return sorted(out, key=lambda s: s["total_ms"], reverse=True)


def table_deltas(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    """Per table: scans, rows read and written in the window, with its size now."""
    out = []
    for relid, row in after.tables.items():
        d = _diff(row, before.tables.get(relid), TABLE_COUNTERS)
        out.append({"relid": relid, "schema": row["schemaname"], "table": row["relname"],
                    **{k: int(v) for k, v in d.items()}, "n_live_tup": int(row["n_live_tup"] or 0),
                    "reltuples": max(float(row["reltuples"] or 0), 0.0), "size_bytes": int(row["size_bytes"] or 0)})
    return sorted(out, key=lambda t: t["seq_tup_read"], reverse=True)


def index_deltas(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    out = []
    for oid, row in after.indexes.items():
        d = _diff(row, before.indexes.get(oid), INDEX_COUNTERS)
        out.append({"relid": row["relid"], "schema": row["schemaname"], "table": row["relname"],
                    "name": row["indexrelname"], "columns": [c or "(expression)" for c in row["columns"]],
                    "unique": row["indisunique"], "primary": row["indisprimary"], "valid": row["indisvalid"],
                    "partial": row["partial"], "constraint": row["constraint_backed"],
                    "size_bytes": int(row["size_bytes"] or 0), **{k: int(v) for k, v in d.items()}})
    return out


def database_deltas(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """Buffer hit ratio and temp files over the window (the whole database, every client)."""
    if not after.database:
        return {}
    d: dict[str, Any] = {k: int(v) for k, v in _diff(after.database, before.database or None, DATABASE_COUNTERS).items()}
    touched = d["blks_hit"] + d["blks_read"]
    d["hit_ratio"] = round(d["blks_hit"] / touched, 4) if touched else None
    return d
