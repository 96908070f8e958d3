"""The database agent on PostgreSQL targets: statistics deltas over the window, generic plans, what-ifs.

``profile_postgres`` snapshots ``pg_stat_statements``, ``pg_stat_user_tables/indexes`` and
``pg_stat_database`` when the window starts (again after the warm-up), waits for ``ctx.stop``,
snapshots again and analyses the difference (tasks.agents.database.postgres.analysis). ``findings_postgres``
reports the same kinds and shapes as the SQLite path: ``missing_index`` (with the planner's
what-if, and a ``create_index`` candidate when the spec allows DDL), ``slow_query`` and
``unused_index``; with the statement capture also ``n_plus_one`` (located at the call site,
tasks.agents.database.call_sites, as is a ``slow_query`` without tables) and at most one
``pool_saturation``: from the psycopg_pool waits the capture timed when there are any
(tasks.agents.database.postgres.pool_waits), else from ``pg_stat_activity`` sampled during the window
(tasks.agents.database.postgres.activity); buffer hits/reads and temp blocks ride along as evidence.

Endpoints: pg_stat_statements knows nothing of requests. When the target ran with the statement
capture (tasks.agents.database.sqlcapture times psycopg 3 cursors per HTTP request), a ``missing_index``
is attributed to the Locust name whose requests spent at least ``MAJORITY_SHARE`` of the time
in captured statements that read its table and use its columns in a WHERE / ON / ORDER BY /
GROUP BY clause (or are one of its statements), and a ``slow_query`` by its normalized text
(tasks.agents.database.sql.attribution); without captured matches, only when exactly one endpoint (the
spec's names and paths, the window's Locust names) mentions one of its tables (``invoices`` /
``invoice``). Otherwise ``endpoint`` is None; ``evidence.endpoint_attribution`` says which rule applied.
The database URL's password never reaches observations, findings or errors (tasks.db.redact.strip_password).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import polars as pl
import psycopg

from tasks.agents.base import AgentContext
from tasks.agents.database.call_sites import call_site_of, read_call_sites, statement_location
from tasks.agents.database.findings import (
    CALL_SITE_KEYS,
    framework_overhead_finding,
    n_plus_one_finding,
    severity_for_share,
)
from tasks.agents.database.postgres.activity import sample_activity
from tasks.agents.database.postgres.analysis import ANALYSIS_BUDGET_S, analyze_window
from tasks.agents.database.postgres.pool_waits import pool_saturation_finding, summarize_pools
from tasks.agents.database.postgres.sqlcommenter import endpoint_of as sqlcommenter_endpoint
from tasks.agents.database.postgres.stats import Snapshot, quiet_session, take_snapshot
from tasks.agents.database.sql.attribution import (
    MAJORITY_SHARE,
    attribute_time,
    load_named_statements,
    statements_like,
    statements_using_index,
    template_names,
)
from tasks.agents.database.sql.housekeeping import housekeeping_mask
from tasks.agents.database.sql.stats import find_n_plus_one
from tasks.agents.database.sqlcapture import POOL_WAIT_SCHEMA, read_pool_waits, sql_log_dir
from tasks.db.postgres import connect, describe_error
from tasks.db.redact import strip_password
from tasks.errors import TransientError
from tasks.findings import Candidate, Finding

__all__ = ["attribute_endpoint", "findings_postgres", "profile_postgres"]

STOP_GRACE_S = 30.0  # give up waiting for ctx.stop this long after the planned window
STATS_FLUSH_WAIT_S = 1.2  # PostgreSQL 15 backends publish table counters within ~1 s of going idle
WHATIF_MIN_COST_RATIO = 2.0  # propose an index only when the planner cost drops this much
SLOW_QUERY_MEAN_MS = 10.0
SLOW_QUERY_MIN_SHARE = 0.05  # or a statement taking this share of all DB time with mean >= 1 ms


def _snapshot(con: psycopg.Connection, url: str) -> Snapshot:
    try:
        return take_snapshot(con)
    except psycopg.Error as exc:
        raise TransientError(f"cannot read PostgreSQL statistics at {strip_password(url)}: {describe_error(exc, url)}") from exc


def profile_postgres(ctx: AgentContext, url: str) -> dict[str, Any]:
    """Statistics deltas over the window and their analysis (see module docstring)."""
    allow_ddl = bool(ctx.spec.database and ctx.spec.database.allow_ddl)
    started = time.time()
    try:
        con = connect(url)
    except psycopg.Error as exc:
        raise TransientError(f"cannot connect to {strip_password(url)}: {describe_error(exc, url)}") from exc
    with con:
        quiet_session(con)
        first = _snapshot(con, url)
        warmup = min(ctx.spec.load.warmup_s, ctx.window_s / 2)
        after_warmup = None
        if warmup > 0 and not ctx.stop.wait(timeout=warmup):
            after_warmup = _snapshot(con, url)
        activity = sample_activity(con, ctx.stop, max(ctx.window_s - (time.time() - started), 0.0) + STOP_GRACE_S)
        time.sleep(STATS_FLUSH_WAIT_S)
        last = _snapshot(con, url)
        before = first
        if after_warmup is not None and _any_calls(after_warmup, last):
            before = after_warmup  # keep the warm-up out, unless the window after it saw nothing
        try:
            observed = analyze_window(con, before, last, allow_ddl=allow_ddl, budget_s=ANALYSIS_BUDGET_S)
        except psycopg.Error as exc:
            raise TransientError(f"PostgreSQL analysis failed at {strip_password(url)}: {describe_error(exc, url)}") from exc
    observed["database"] = strip_password(url)
    observed["activity"] = activity.summary(since=started + warmup)
    observed["sqlcommenter"] = activity.tags.to_dict()
    observed["warmup_excluded"] = before is not first
    return observed


def _any_calls(before: Snapshot, after: Snapshot) -> bool:
    if before.statements is None or after.statements is None:
        return True
    return any(row["calls"] > before.statements.get(key, {}).get("calls", 0) for key, row in after.statements.items())


def findings_postgres(ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> list[Finding]:
    if "skipped" in observed:
        return []
    endpoints = [(e.name, e.path) for e in ctx.spec.load.endpoints]
    if "endpoint" in samples.columns:
        known = {name for name, _ in endpoints}
        endpoints += [(n, "") for n in samples["endpoint"].unique().sort().to_list() if n and n not in known]
    allow_ddl = bool(ctx.spec.database and ctx.spec.database.allow_ddl)
    since, until = observed.get("window", [None, None])
    try:
        captured = load_named_statements(sql_log_dir(ctx.workdir), since, until,
                                         [(e.name, e.path) for e in ctx.spec.load.endpoints], samples)
    except OSError:  # an unreadable capture folder: attribute by table names, as without capture
        captured = pl.DataFrame()
    log_dir = sql_log_dir(ctx.workdir)
    try:
        sites = read_call_sites(log_dir)
        waits = read_pool_waits(log_dir, since, until)
    except OSError:
        sites, waits = {}, pl.DataFrame(schema=POOL_WAIT_SCHEMA)
    names = template_names(captured)
    query_ids = {e["statement"]: e.get("queryid") for e in observed.get("statements", [])}
    spec_endpoints = [(e.name, e.path) for e in ctx.spec.load.endpoints]
    sample_names = samples["endpoint"].drop_nulls().unique().to_list() if "endpoint" in samples.columns else []

    def tagged(statements: list[str]) -> tuple[str | None, dict[str, Any]]:
        return sqlcommenter_endpoint(observed.get("sqlcommenter") or {}, [query_ids.get(t) for t in statements],
                                     spec_endpoints, sample_names)

    out = [f for c in observed.get("index_candidates", [])
           if (f := _missing_index(c, endpoints, allow_ddl, captured, tagged))]
    out += _slow_queries(observed, endpoints, captured, sites, tagged)
    out += _n_plus_one(captured, sites, names)
    out += [_unused_index(row) for row in observed.get("unused_indexes", [])]
    if overhead := framework_overhead_finding(observed.get("housekeeping")):
        out.append(overhead)
    pools = summarize_pools(waits, samples, names=names, since=since, until=until)
    if saturated := pool_saturation_finding(pools, observed.get("activity", {})):
        out.append(saturated)
    return out


def _n_plus_one(captured: pl.DataFrame, sites: dict[str, dict[str, Any]], names: dict[str, str]) -> list[Finding]:
    """``n_plus_one`` from the captured statements of the window (as on SQLite)."""
    if captured.is_empty():
        return []
    own_work = captured.filter(~housekeeping_mask(captured))  # the app's statements, not its stack's
    return [n_plus_one_finding(row | call_site_of(sites, row["statement"]), names)
            for row in find_n_plus_one(own_work)]


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def attribute_endpoint(tables: list[str], endpoints: list[tuple[str, str]]) -> str | None:
    """The one endpoint whose name or path mentions one of ``tables`` (singular or plural), else None."""
    forms = set()
    for table in tables:
        name = _words(table).strip()
        forms |= {name, name.removesuffix("s"), name.removesuffix("es")} - {""}
    hits = {name for name, path in endpoints if any(f" {form} " in _words(f"{name} {path}") for form in forms)}
    return hits.pop() if len(hits) == 1 else None


def _attribute(captured: pl.DataFrame, match, tables: list[str], endpoints: list[tuple[str, str]],
               tagged: Callable[[], tuple[str | None, dict[str, Any]]] | None = None) -> tuple[str | None, dict[str, Any]]:
    """The endpoint, and evidence of how: captured statements (``match(frame)`` -> mask), else the
    sqlcommenter tags of the running queries (``tagged()``), else table names."""
    if not captured.is_empty():
        found = attribute_time(captured, match(captured), MAJORITY_SHARE)
        if found is not None:
            return found.endpoint, {"endpoint_attribution": found.describe(MAJORITY_SHARE),
                                    "endpoint_time": found.evidence()}
    if tagged is not None:
        endpoint, evidence = tagged()
        if endpoint is not None:
            return endpoint, evidence
    endpoint = attribute_endpoint(tables, endpoints)
    how = "table name" if endpoint else "none (no single endpoint names the table)"
    if not captured.is_empty():
        how += "; no captured statement matched"
    return endpoint, {"endpoint_attribution": how}


def index_location(table: str, columns: list[str]) -> str:
    return f"{table}.{columns[0]}" if len(columns) == 1 else f"{table}({','.join(columns)})"


def _missing_index(cand: dict[str, Any], endpoints: list[tuple[str, str]], allow_ddl: bool,
                   captured: pl.DataFrame, tagged: Callable[[list[str]], tuple[str | None, dict[str, Any]]]) -> Finding | None:
    w = cand.get("whatif")
    if not w or w["index_used"] is False or not w["ratio"] or w["ratio"] < WHATIF_MIN_COST_RATIO:
        return None
    table, columns = cand["table"], list(cand["columns"])
    endpoint, attribution = _attribute(
        captured, lambda f: statements_using_index(f, table, columns) | statements_like(f, cand["statements"]),
        [table], endpoints, lambda: tagged(cand["statements"]))
    # the plan gets this much cheaper, on the statements' share of the window's database time
    gain = round((1 - w["cost_after"] / w["cost_before"]) * cand["share"], 4)
    candidate = None
    if allow_ddl:
        params: dict[str, Any] = {"table": table, "columns": columns, "name": cand["name"]}
        if cand["schema"] != "public":
            params["schema"] = cand["schema"]
        candidate = Candidate(
            kind="create_index", params=params, risk="low", expected_gain=gain, endpoint=endpoint,
            description=f"CREATE INDEX CONCURRENTLY {cand['name']} ON {table}({', '.join(columns)}): planner cost "
                        f"{w['cost_before']:.6g} -> {w['cost_after']:.6g} ({w['method']})",
        )
    evidence = {
        "statements": cand["statements"], "calls": cand["calls"], "mean_ms": cand["mean_ms"],
        "stddev_ms": cand["stddev_ms"], "db_time_share": cand["share"], "plan": cand["plans_before"],
        "plans_with_index": cand.get("plans_with_index", {}), "whatif": w, "index": cand["name"],
        "schema": cand["schema"], "basis": cand["basis"], "table_rows": cand["table_rows"],
        "resources": {k: cand[k] for k in ("shared_blks_hit", "shared_blks_read", "temp_blks_written")},
        **attribution,
    }
    return Finding(
        agent="database", kind="missing_index", location=index_location(table, columns),
        severity=severity_for_share(cand["share"]), evidence=evidence, endpoint=endpoint,
        estimated_gain={"cost_before": w["cost_before"], "cost_after": w["cost_after"], "ratio": w["ratio"],
                        "db_time_share": cand["share"], "method": w["method"], "basis": w["basis"]},
        candidate=candidate,
    )


def _slow_queries(observed: dict[str, Any], endpoints: list[tuple[str, str]], captured: pl.DataFrame,
                  sites: dict[str, dict[str, Any]],
                  tagged: Callable[[list[str]], tuple[str | None, dict[str, Any]]]) -> list[Finding]:
    out = []
    for s in observed.get("statements", []):
        if not (s["mean_ms"] >= SLOW_QUERY_MEAN_MS or (s["share"] >= SLOW_QUERY_MIN_SHARE and s["mean_ms"] >= 1.0)):
            continue
        evidence = {k: s.get(k) for k in ("statement", "queryid", "calls", "total_ms", "mean_ms", "stddev_ms",
                                          "rows_mean", "share", "plan", "plan_kind", "full_scans", "explain_error",
                                          "shared_blks_hit", "shared_blks_read", "hit_ratio", "temp_blks_written")}
        evidence["timing_source"] = "pg_stat_statements (server execution time; no per-call percentiles)"
        text = s["statement"]
        endpoint, attribution = _attribute(captured, lambda f, text=text: statements_like(f, [text]),
                                           s["tables"], endpoints, partial(tagged, [text]))
        evidence |= attribution
        site = call_site_of(sites, s["statement"])
        evidence |= {k: site[k] for k in CALL_SITE_KEYS}
        out.append(Finding(
            agent="database", kind="slow_query",
            location=statement_location(s["tables"], site["call_site"], s["statement"]),
            severity=severity_for_share(s["share"]), evidence=evidence, endpoint=endpoint,
            estimated_gain={"db_time_share": s["share"], "total_ms": s["total_ms"]},
        ))
    return out


def _unused_index(row: dict[str, Any]) -> Finding:
    return Finding(
        agent="database", kind="unused_index", location=index_location(row["table"], row["columns"]),
        severity="low",
        evidence={**row, "index": row["name"], "idx_scan_in_window": 0,
                  "note": "no scan used it in this window while its table was read; writes still pay for it"},
    )
