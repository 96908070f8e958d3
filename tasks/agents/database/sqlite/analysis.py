"""Analyse one window of captured SQLite statements: the database agent's observations.

Statements -> normalized aggregates (per statement, per endpoint, with their call sites:
tasks.agents.database.call_sites; the stack's own housekeeping set apart:
tasks.agents.database.sql.housekeeping) -> EXPLAIN QUERY PLAN of every
distinct statement (read-only connection) -> full scans of the top statements -> candidate
indexes -> measured what-if on a copy of the database -> unused indexes. Returns plain,
JSON-serialisable dicts; tasks.agents.database.agent turns them into findings.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import polars as pl

from tasks.agents.database.call_sites import call_site_of, find_call_sites
from tasks.agents.database.sql.housekeeping import housekeeping_mask, summarize
from tasks.agents.database.sql.stats import (
    add_statement_columns,
    aggregate_endpoints,
    aggregate_statements,
    attribute_requests,
    find_n_plus_one,
    statement_endpoints,
)
from tasks.agents.database.sql.text import null_params, table_refs, tokenize
from tasks.agents.database.sqlcapture import read_statements
from tasks.agents.database.sqlite.plan import (
    copy_database,
    decode_params,
    existing_index_covers,
    explain_plan,
    explainable,
    find_full_scans,
    find_unused_indexes,
    index_columns,
    whatif_index,
)
from tasks.agents.database.sqlite.util import connect_readonly, list_indexes

ANALYSIS_BUDGET_S = 10.0
TOP_STATEMENTS = 10  # by total time: reported and searched for missing indexes
EXPLAIN_MAX = 300  # distinct statements explained (index usage needs them all)
WHATIF_MAX_CANDIDATES = 5
WHATIF_INSTANCES = 3  # captured executions timed per statement
WHATIF_MAX_DB_BYTES = 1 << 30  # larger databases are not copied for the what-if
WHATIF_RESERVE_S = 1.0  # stop starting what-ifs this close to the deadline
PLACEHOLDER_PATTERN = r"\?|[:@$][A-Za-z_]"  # may over-match (inside strings): then NULLs are bound


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _instances(rows: pl.DataFrame, statement: str, limit: int = WHATIF_INSTANCES) -> list[tuple[str, Any]]:
    """Up to ``limit`` distinct captured executions of ``statement`` with real values."""
    mine = rows.filter(pl.col("statement") == statement)
    literal_only = ~pl.col("sql").str.contains(PLACEHOLDER_PATTERN)
    complete = mine.filter(pl.col("params").is_not_null() | literal_only)
    chosen = complete if not complete.is_empty() else mine
    pairs = chosen.select("sql", "params").unique(maintain_order=True).head(limit).rows()
    out = []
    for sql, params in pairs:
        try:
            out.append((sql, decode_params(params, sql)))
        except (ValueError, KeyError):
            out.append((sql, null_params(sql)))
    return out


def _with_statement(frame: pl.DataFrame) -> pl.DataFrame:
    return add_statement_columns(frame) if not frame.is_empty() else frame


def analyze_sqlite(db_path: Path, log_dir: Path, *, since: float | None, until: float | None,
                   workdir: Path, budget_s: float = ANALYSIS_BUDGET_S) -> dict[str, Any]:
    """Everything the database agent observed about one window (see module docstring)."""
    started = time.monotonic()
    deadline = started + budget_s
    window = read_statements(log_dir, since, until)
    observed: dict[str, Any] = {
        "backend": "sqlite", "database": str(db_path), "window": [since, until],
        "statements_captured": window.height, "capture_files": len(list(Path(log_dir).glob("sql-*.jsonl"))),
    }
    if window.is_empty():
        observed["note"] = "no SQL statements captured in the window (was the target started with capture_env?)"
        return observed
    window = attribute_requests(_with_statement(window))
    observed["attribution"] = "request" if window["attributed"].all() else (
        "partial" if window["attributed"].any() else "thread+time")
    with_values = _with_statement(read_statements(log_dir, with_params_only=True, with_stack_only=True))
    sites = find_call_sites(with_values)
    pool = pl.concat([with_values, window.select(with_values.columns)]) if not with_values.is_empty() else window
    stats = aggregate_statements(window)
    observed["db_time_ms"] = _round(float(window["duration_ms"].sum()), 3)
    observed["housekeeping"] = summarize(list(stats.iter_rows(named=True)), float(window["duration_ms"].sum()))
    observed["endpoints"] = [{k: _round(v) for k, v in row.items()}
                             for row in aggregate_endpoints(window).iter_rows(named=True)]
    own_work = window.filter(~housekeeping_mask(window))  # the app's statements, not its stack's
    observed["n_plus_one"] = [{k: _round(v) for k, v in row.items()} | call_site_of(sites, row["statement"])
                              for row in find_n_plus_one(own_work)]
    by_endpoint = statement_endpoints(window)

    con = connect_readonly(db_path)
    try:
        plans, explain_errors, truncated = _explain_all(con, stats, pool, deadline)
        statements = []
        candidates: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        indexes = list_indexes(con)
        for rank, row in enumerate(stats.filter(~housekeeping_mask(stats)).iter_rows(named=True)):
            if rank >= TOP_STATEMENTS:
                break
            text = row["statement"]
            plan = plans.get(text, [])
            entry = {k: _round(v) for k, v in row.items()}
            entry.update(plan=plan, endpoints=by_endpoint.get(text, []), full_scans=[],
                         tables=sorted({r.table for r in table_refs(tokenize(text))}), **call_site_of(sites, text))
            if text in explain_errors:
                entry["explain_error"] = explain_errors[text]
            example = _instances(pool, text, 1)
            for scan in find_full_scans(con, example[0][0], plan) if example and plan else []:
                cols = index_columns(con, example[0][0], scan)
                entry["full_scans"].append({"table": scan.table, "detail": scan.detail, "index_columns": cols})
                if not cols or existing_index_covers(indexes, scan.table, cols):
                    continue
                cand = candidates.setdefault((scan.table, tuple(cols)), {
                    "table": scan.table, "columns": cols, "statements": [], "share": 0.0, "plans_before": {}})
                cand["statements"].append(text)
                cand["share"] += row["share"]
                cand["plans_before"][text] = plan
            statements.append(entry)
        observed["statements"] = statements
        observed["explained"] = len(plans)
        observed["explain_truncated"] = truncated
        if truncated:
            observed["unused_indexes"] = []
            observed["unused_indexes_note"] = "not every statement was explained; unused indexes not judged"
        else:
            observed["unused_indexes"] = [
                {"name": i.name, "table": i.table, "columns": list(i.columns), "partial": i.partial}
                for i in find_unused_indexes(con, list(plans.values()))
            ]
    finally:
        con.close()
    observed["index_candidates"] = _measure_candidates(
        db_path, workdir, list(candidates.values()), pool, stats, by_endpoint, deadline)
    observed["analysis_s"] = round(time.monotonic() - started, 3)
    return observed


def _explain_all(con: sqlite3.Connection, stats: pl.DataFrame, pool: pl.DataFrame,
                 deadline: float) -> tuple[dict[str, list[str]], dict[str, str], bool]:
    plans: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    truncated = False
    for n, text in enumerate(stats["statement"].to_list()):
        if n >= EXPLAIN_MAX or time.monotonic() > deadline - WHATIF_RESERVE_S:
            truncated = True
            break
        example = _instances(pool, text, 1)
        if not example or not explainable(example[0][0]):
            continue
        sql, params = example[0]
        try:
            plans[text] = explain_plan(con, sql, params)
        except sqlite3.Error as exc:
            errors[text] = str(exc)
    return plans, errors, truncated


def _measure_candidates(db_path: Path, workdir: Path, candidates: list[dict[str, Any]], pool: pl.DataFrame,
                        stats: pl.DataFrame, by_endpoint: dict[str, list[dict]], deadline: float) -> list[dict]:
    """The what-if of each candidate index, on one copy of the database (deleted afterwards)."""
    if not candidates:
        return []
    candidates = sorted(candidates, key=lambda c: c["share"], reverse=True)[:WHATIF_MAX_CANDIDATES]
    if db_path.stat().st_size > WHATIF_MAX_DB_BYTES:
        return [dict(c, whatif=None, whatif_error="database too large to copy for the what-if") for c in candidates]
    per_statement = {row["statement"]: row for row in stats.iter_rows(named=True)}
    try:
        copy = copy_database(db_path, workdir / "whatif")
    except sqlite3.Error as exc:
        return [dict(c, whatif=None, whatif_error=f"could not copy the database: {exc}") for c in candidates]
    out = []
    try:
        for cand in candidates:
            entry = dict(cand, share=round(cand["share"], 4))
            entry["calls"] = sum(per_statement[s]["calls"] for s in cand["statements"])
            entry["mean_ms"] = round(sum(per_statement[s]["total_ms"] for s in cand["statements"]) / entry["calls"], 4)
            entry["p95_ms"] = round(max(per_statement[s]["p95_ms"] for s in cand["statements"]), 4)
            entry["endpoints"] = [e for s in cand["statements"] for e in by_endpoint.get(s, [])]
            if time.monotonic() > deadline - WHATIF_RESERVE_S:
                entry.update(whatif=None, whatif_error="analysis time budget spent")
                out.append(entry)
                continue
            instances = [i for s in cand["statements"] for i in _instances(pool, s)]
            try:
                w = whatif_index(copy, cand["table"], list(cand["columns"]), instances, deadline)
            except sqlite3.Error as exc:
                entry.update(whatif=None, whatif_error=str(exc))
            else:
                entry["name"] = w.name
                entry["whatif"] = {
                    "before_ms": round(w.before_ms, 4), "after_ms": round(w.after_ms, 4),
                    "ratio": round(w.ratio, 2), "build_ms": round(w.build_ms, 2),
                    "index_used": w.index_used, "instances": w.instances, "plans_after": w.plans_after,
                    "measured_on": "copy of the database (backup API)",
                }
            out.append(entry)
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            copy.with_name(copy.name + suffix).unlink(missing_ok=True)
    return out
