"""SQLite statements from where the profiler saw time: the database agent's source on an attached target.

A target the toolkit did not start runs without the injected capture, and SQLite keeps no
server-side statistics. What remains is the application agent's CPU profile of the target
(py-spy: SQLite runs inside the target's process, so its time shows on the Python line that
called ``execute``). ``profiled_statements`` takes each of the target's own functions holding
at least MIN_SHARE of the samples, reads its source, and files the function's samples under
the SQL string literal nearest above each sampled line (the literal passed to, or assigned just
before, the ``execute`` there). ``analyze_profiled`` then does what the capture path does with
them: EXPLAIN QUERY PLAN (parameters bound to NULL: their values were never seen), full scans,
candidate indexes and a what-if timed on a copy of the database. Shares are shares of the
profile's samples, not of database time, and the evidence says so.
"""

from __future__ import annotations

import ast
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from tasks.agents.database.sql.housekeeping import is_housekeeping
from tasks.agents.database.sql.text import normalize_sql, null_params, table_refs, tokenize
from tasks.agents.database.sqlite.plan import (
    copy_database,
    existing_index_covers,
    explain_plan,
    explainable,
    find_full_scans,
    index_columns,
    whatif_index,
)
from tasks.agents.database.sqlite.util import connect_readonly, list_indexes

MIN_SHARE = 0.02  # an own function holding this share of the CPU samples is read for SQL
MAX_STATEMENTS = 20
WHATIF_MAX_CANDIDATES = 5
SOURCE = "profiler samples at the SQL literal's line (py-spy), EXPLAIN QUERY PLAN, what-if on a copy"
_SQL = re.compile(r"^\s*(select|with|update|delete|insert|replace)\b", re.IGNORECASE)


def _sql_literals(file: str, line: int) -> list[tuple[int, str]]:
    """(line, text) of the SQL string literals in the innermost function around ``file:line``."""
    try:
        tree = ast.parse(Path(file).read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return []
    around = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
              and n.lineno <= line <= (n.end_lineno or n.lineno)]
    if not around:
        return []
    inner = max(around, key=lambda n: n.lineno)
    return sorted((n.lineno, n.value) for n in ast.walk(inner)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and _SQL.match(n.value))


def _nearest(literals: list[tuple[int, str]], line: int) -> str:
    above = [text for lineno, text in literals if lineno <= line]
    return above[-1] if above else literals[0][1]


def profiled_statements(cpu_profile: dict[str, Any] | None, min_share: float = MIN_SHARE) -> list[dict[str, Any]]:
    """SQL literals of the target's own hot functions with the samples filed under them, by samples."""
    total = (cpu_profile or {}).get("samples") or 0
    found: dict[str, dict[str, Any]] = {}
    for fn in (cpu_profile or {}).get("functions", []) if total else []:
        if not fn.get("own") or fn["attributed"] < min_share * total:
            continue
        for line, count in fn.get("lines", []):
            literals = _sql_literals(fn["file"], line)
            if not literals:
                continue
            sql = _nearest(literals, line)
            entry = found.setdefault(normalize_sql(sql), {"sql": sql, "statement": normalize_sql(sql),
                                                          "function": fn["location"], "samples": 0, "lines": []})
            entry["samples"] += count
            entry["lines"].append(line)
    out = sorted(found.values(), key=lambda e: -e["samples"])[:MAX_STATEMENTS]
    for entry in out:
        entry["share"] = round(entry["samples"] / total, 4)
    return [e for e in out if not is_housekeeping(e["sql"])]


def analyze_profiled(db_path: Path, statements: list[dict[str, Any]], *, workdir: Path,
                     budget_s: float) -> dict[str, Any]:
    """EXPLAIN, full scans, candidate indexes and their what-if for ``profiled_statements``."""
    deadline = time.monotonic() + budget_s
    observed: dict[str, Any] = {"backend": "sqlite", "database": str(db_path), "source": SOURCE,
                                "profiled_statements": statements, "statements": [], "index_candidates": []}
    candidates: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    con = connect_readonly(db_path)
    try:
        indexes = list_indexes(con)
        for s in statements:
            if not explainable(s["sql"]):
                continue
            params = null_params(s["sql"])
            try:
                plan = explain_plan(con, s["sql"], params)
            except sqlite3.Error as exc:
                s["explain_error"] = str(exc)
                continue
            s["plan"] = plan
            s["tables"] = sorted({r.table for r in table_refs(tokenize(s["sql"]))})
            for scan in find_full_scans(con, s["sql"], plan):
                cols = index_columns(con, s["sql"], scan)
                if not cols or existing_index_covers(indexes, scan.table, cols):
                    continue
                cand = candidates.setdefault((scan.table, tuple(cols)), {
                    "table": scan.table, "columns": cols, "statements": [], "share": 0.0, "plans_before": {},
                    "instances": [], "endpoints": [], "calls": None, "mean_ms": None, "p95_ms": None,
                    "share_basis": "share of the target's CPU samples (profiler), not of database time"})
                cand["statements"].append(s["statement"])
                cand["share"] = round(cand["share"] + s["share"], 4)
                cand["plans_before"][s["statement"]] = plan
                cand["instances"].append((s["sql"], params))
            observed["statements"].append(s)
    finally:
        con.close()
    observed["index_candidates"] = _whatif(db_path, workdir, list(candidates.values()), deadline)
    return observed


def _whatif(db_path: Path, workdir: Path, candidates: list[dict[str, Any]], deadline: float) -> list[dict[str, Any]]:
    if not candidates:
        return []
    copy = copy_database(db_path, workdir / "whatif-profiled")
    out = []
    try:
        for cand in sorted(candidates, key=lambda c: -c["share"])[:WHATIF_MAX_CANDIDATES]:
            instances = cand.pop("instances")
            try:
                w = whatif_index(copy, cand["table"], list(cand["columns"]), instances, deadline)
            except sqlite3.Error as exc:
                out.append(dict(cand, whatif=None, whatif_error=str(exc)))
                continue
            out.append(dict(cand, name=w.name, whatif={
                "before_ms": round(w.before_ms, 4), "after_ms": round(w.after_ms, 4), "ratio": round(w.ratio, 2),
                "build_ms": round(w.build_ms, 2), "index_used": w.index_used, "instances": w.instances,
                "plans_after": w.plans_after, "parameters": "NULL (values not seen without the capture)",
                "measured_on": "copy of the database (backup API)"}))
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            copy.with_name(copy.name + suffix).unlink(missing_ok=True)
    return out
