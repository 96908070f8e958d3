"""Analyse one PostgreSQL window: the database agent's observations (plain, JSON-ready dicts).

Snapshot deltas (tasks.agents.database.postgres.stats) -> the top statements by total time -> their generic
plans (tasks.agents.database.postgres.plan) -> sequential scans of large tables -> candidate indexes ->
the planner's what-if (HypoPG, else an estimate from the plan) -> indexes no scan used
while their table was read. tasks.agents.database.postgres.agent turns the result into findings.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tasks.agents.database.postgres.plan import (
    ScanCandidate,
    explain_generic,
    explainable,
    find_seq_scans,
    plan_lines,
    relations,
    whatif_estimate,
    whatif_hypopg,
)
from tasks.agents.database.postgres.stats import (
    Snapshot,
    database_deltas,
    index_deltas,
    statement_deltas,
    table_deltas,
)
from tasks.agents.database.sql.housekeeping import is_housekeeping, summarize
from tasks.agents.database.sql.naming import index_name
from tasks.agents.database.sql.text import table_refs, tokenize
from tasks.db.postgres import describe_error

ANALYSIS_BUDGET_S = 10.0
TOP_STATEMENTS = 10  # by total time: explained, reported and searched for missing indexes
WHATIF_MAX_CANDIDATES = 5
CREATE_HYPOPG = True  # with database.allow_ddl: CREATE EXTENSION hypopg when the server has it
HYPOPG_LOCK_TIMEOUT = "2s"  # CREATE EXTENSION waits at most this long for a lock
HYPOPG_BASIS = "planner cost of the generic plan with a hypothetical index (HypoPG); not a timing"
ESTIMATE_BASIS = ("estimate from the plan without the index (HypoPG not installed): scan cost scaled to the "
                  "rows it returns, sort under a Limit removed; not a timing")
_COLUMNS = "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum"


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def setup_hypopg(con: psycopg.Connection, allow_ddl: bool) -> tuple[str | None, str]:
    """HypoPG's schema when usable, and how it came to be (or why not)."""
    find = "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hypopg'"
    row = con.execute(find).fetchone()
    if row:
        return row[0], "installed"
    if not con.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone():
        return None, "not available on the server (apt-get install postgresql-15-hypopg)"
    if not allow_ddl:
        return None, "available but not installed in this database (database.allow_ddl is false)"
    if not CREATE_HYPOPG:
        return None, "available but not installed in this database (CREATE_HYPOPG is off)"
    try:
        con.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    except psycopg.Error as exc:
        return None, f"CREATE EXTENSION hypopg failed: {describe_error(exc)}"
    row = con.execute(find).fetchone()
    return (row[0], "created in this database (CREATE EXTENSION hypopg)") if row else (None, "not installed")


class TableInfo:
    """Table rows, columns and primary key by (schema, table), read once each."""

    def __init__(self, con: psycopg.Connection, tables: list[dict[str, Any]], indexes: list[dict[str, Any]]) -> None:
        self._con = con
        self._tables = {(t["schema"], t["table"]): t for t in tables}
        self._pk = {(i["schema"], i["table"]): i["columns"] for i in indexes if i["primary"]}
        self._cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def __call__(self, schema: str, table: str) -> dict[str, Any] | None:
        key = (schema, table)
        if key not in self._cache:
            t = self._tables.get(key)
            if t is None:
                self._cache[key] = None
            else:
                columns = [r[0] for r in self._con.execute(_COLUMNS, [t["relid"]]).fetchall()]
                self._cache[key] = {"rows": max(t["reltuples"], float(t["n_live_tup"])), "columns": columns,
                                    "primary_key": self._pk.get(key, [])}
        return self._cache[key]


def analyze_window(con: psycopg.Connection, before: Snapshot, after: Snapshot, *, allow_ddl: bool,
                   budget_s: float = ANALYSIS_BUDGET_S) -> dict[str, Any]:
    """Everything the agent observed between two snapshots (see module docstring)."""
    started = time.monotonic()
    deadline = started + budget_s
    statements = statement_deltas(before, after)
    tables, indexes = table_deltas(before, after), index_deltas(before, after)
    db_time = sum(s["total_ms"] for s in statements)
    observed: dict[str, Any] = {
        "backend": "postgresql", "window": [before.taken_at, after.taken_at],
        "server_version": con.info.server_version, "notes": before.notes + after.notes,
        "pg_stat_statements": after.statements is not None,
        "statements_captured": sum(s["calls"] for s in statements), "distinct_statements": len(statements),
        "db_time_ms": round(db_time, 3), "resources": database_deltas(before, after),
        "tables": [t for t in tables if t["seq_scan"] or t["idx_scan"] or t["n_tup_ins"] or t["n_tup_upd"]],
    }
    info = TableInfo(con, tables, indexes)
    candidates: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
    top = []
    observed["housekeeping"] = summarize(statements, db_time)
    for s in [s for s in statements if not is_housekeeping(s["statement"])][:TOP_STATEMENTS]:
        entry = {k: _round(v) for k, v in s.items()}
        entry["share"] = round(s["total_ms"] / db_time, 4) if db_time else 0.0
        entry.update(plan=[], full_scans=[], plan_kind="generic",
                     tables=sorted({r.table for r in table_refs(tokenize(s["statement"]))}))
        if not explainable(s["statement"]) or time.monotonic() > deadline:
            entry["explain_error"] = "not explained" if explainable(s["statement"]) else "not a single DML statement"
            top.append(entry)
            continue
        try:
            root = explain_generic(con, s["statement"])
        except psycopg.Error as exc:
            entry["explain_error"] = describe_error(exc)
            top.append(entry)
            continue
        entry.update(plan=plan_lines(root), tables=relations(root), plan_cost=root["Total Cost"])
        for scan in find_seq_scans(root, info):
            covered = _covering_index(indexes, scan)
            entry["full_scans"].append({"table": scan.table, "detail": scan.detail, "index_columns": list(scan.columns),
                                        "basis": scan.basis, **({"covered_by": covered} if covered else {})})
            if not scan.columns or covered:
                continue
            cand = candidates.setdefault((scan.schema, scan.table, scan.columns), {
                "schema": scan.schema, "table": scan.table, "columns": list(scan.columns), "basis": scan.basis,
                "name": index_name(scan.table, list(scan.columns)), "statements": [], "roots": {},
                "table_rows": info(scan.schema, scan.table)["rows"]})  # type: ignore[index]
            cand["statements"].append(entry)
            cand["roots"][s["statement"]] = root
        top.append(entry)
    observed["statements"] = top
    observed["explained"] = sum(1 for e in top if e["plan"])
    observed["index_candidates"], observed["hypopg"] = (
        _whatifs(con, list(candidates.values()), allow_ddl, deadline) if candidates else ([], "not needed"))
    observed["unused_indexes"] = _unused_indexes(indexes, tables)
    observed["analysis_s"] = round(time.monotonic() - started, 3)
    return observed


def _covering_index(indexes: list[dict[str, Any]], scan: ScanCandidate) -> str | None:
    for idx in indexes:
        if idx["schema"] == scan.schema and idx["table"] == scan.table and idx["valid"] and not idx["partial"] \
                and tuple(idx["columns"][: len(scan.columns)]) == scan.columns:
            return idx["name"]
    return None


def _whatifs(con: psycopg.Connection, candidates: list[dict[str, Any]], allow_ddl: bool,
             deadline: float) -> tuple[list[dict[str, Any]], str]:
    """The candidates' what-ifs inside one transaction that is always rolled back: a HypoPG
    extension we create lives only there, so nothing is left in the target's database, even when
    the process dies (the server rolls back the open transaction of a dropped connection); its
    lock waits are bounded."""
    with con.transaction(force_rollback=True):
        con.execute("SELECT set_config('lock_timeout', %s, true)", [HYPOPG_LOCK_TIMEOUT])
        hypopg_schema, how = setup_hypopg(con, allow_ddl)
        if how.startswith("created"):
            how = "created for the what-if in a transaction rolled back after it (nothing left in the database)"
        return _measure(con, candidates, hypopg_schema, deadline), how


def _measure(con: psycopg.Connection, candidates: list[dict[str, Any]], hypopg_schema: str | None,
             deadline: float) -> list[dict[str, Any]]:
    """The what-if of each candidate over its statements, weighted by their calls in the window."""
    for cand in candidates:
        cand["share"] = round(sum(e["share"] for e in cand["statements"]), 4)
    out = []
    for cand in sorted(candidates, key=lambda c: c["share"], reverse=True)[:WHATIF_MAX_CANDIDATES]:
        entries, roots = cand.pop("statements"), cand.pop("roots")
        calls = sum(e["calls"] for e in entries)
        entry = dict(cand, statements=[e["statement"] for e in entries], calls=calls,
                     mean_ms=round(sum(e["total_ms"] for e in entries) / calls, 4),
                     stddev_ms=max(e["stddev_ms"] for e in entries),
                     plans_before={e["statement"]: e["plan"] for e in entries},
                     shared_blks_hit=sum(e["shared_blks_hit"] for e in entries),
                     shared_blks_read=sum(e["shared_blks_read"] for e in entries),
                     temp_blks_written=sum(e["temp_blks_written"] for e in entries))
        per_statement = []
        try:
            with con.transaction():  # a savepoint: one candidate's error leaves the others their turn
                for e in entries:
                    if time.monotonic() > deadline:
                        raise TimeoutError("analysis time budget spent")
                    if hypopg_schema:
                        w = whatif_hypopg(con, hypopg_schema, e["statement"], cand["schema"], cand["table"],
                                          tuple(cand["columns"]))
                    else:
                        w = whatif_estimate(roots[e["statement"]], cand["schema"], cand["table"], cand["table_rows"])
                    per_statement.append(dict(w, statement=e["statement"], calls=e["calls"]))
        except (psycopg.Error, TimeoutError) as exc:
            entry.update(whatif=None, whatif_error=describe_error(exc))
            out.append(entry)
            continue
        before = sum(w["calls"] * w["cost_before"] for w in per_statement)
        after = sum(w["calls"] * w["cost_after"] for w in per_statement)
        used = [w["index_used"] for w in per_statement]
        entry["whatif"] = {
            "method": "hypopg" if hypopg_schema else "explain-estimate",
            "basis": HYPOPG_BASIS if hypopg_schema else ESTIMATE_BASIS,
            "cost_before": round(before / calls, 2), "cost_after": round(after / calls, 2),
            "ratio": round(before / after, 2) if after > 0 else None,
            "index_used": any(used) if hypopg_schema else None,
            "statements": [{k: _round(v, 2) for k, v in w.items() if k != "plan_after"} for w in per_statement],
        }
        entry["plans_with_index"] = {w["statement"]: w["plan_after"] for w in per_statement if w["plan_after"]}
        out.append(entry)
    return out


def _unused_indexes(indexes: list[dict[str, Any]], tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain indexes no scan used in the window although their table was read (constraints excluded)."""
    read = {t["relid"]: t for t in tables if t["seq_scan"] + t["idx_scan"] > 0}
    out = []
    for idx in indexes:
        if idx["idx_scan"] or idx["relid"] not in read or idx["primary"] or idx["unique"] or idx["constraint"]:
            continue
        if not idx["valid"]:
            continue
        table = read[idx["relid"]]
        out.append({k: idx[k] for k in ("schema", "table", "name", "columns", "partial", "size_bytes")}
                   | {"table_seq_scans": table["seq_scan"], "table_idx_scans": table["idx_scan"],
                      "table_writes": table["n_tup_ins"] + table["n_tup_upd"] + table["n_tup_del"]})
    return out
