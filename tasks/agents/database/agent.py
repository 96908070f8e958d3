"""The database agent: what the target's SQL costs, and which index would measurably help.

SQLite targets: the target is started with ``target_env(workdir)`` (tasks.agents.database.sqlcapture),
so every statement it runs is captured with its duration and request; ``profile`` waits for
the window to end and analyses it (tasks.agents.database.sqlite.analysis); ``findings`` reports
``missing_index`` (with a measured what-if and, when the spec allows DDL, a ``create_index``
candidate), ``slow_query``, ``n_plus_one``, ``unused_index`` and ``framework_overhead`` (the
stack's introspection and settings statements, set apart from the app's own: never a slow query
or an N+1). PostgreSQL targets go to
tasks.agents.database.postgres.agent (pg_stat_statements deltas, generic plans, HypoPG what-if).
A SQLite target that ran without the capture (attached, not started by the toolkit) still gets
its ``missing_index`` findings from the SQL literals where the application agent's profiler saw
time (tasks.agents.database.sqlite.from_profile); each finding's ``sources`` says which.

Locations: an ``n_plus_one`` is located at its statement's call site in the target's code
(``module:function``, tasks.agents.database.call_sites; the endpoint stays in ``endpoint``), a
``slow_query`` at its tables, else its call site, else its first keywords (``COMMIT``).

Endpoints: statements carry the Locust name their request was sent with (exact; the load
generator marks every named request), else the route template (or the raw path with ids
templated), named after the Locust request whose spec path or name has the same template, else
after the Locust name whose samples enclose the template's requests in time, else reported as
the template itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl

from tasks.agents.base import AgentContext
from tasks.agents.database.call_sites import statement_location
from tasks.agents.database.findings import (
    CALL_SITE_KEYS,
    framework_overhead_finding,
    n_plus_one_finding,
    severity_for_share,
)
from tasks.agents.database.postgres.agent import findings_postgres, profile_postgres
from tasks.agents.database.sql.stats import (
    add_endpoint_column,
    correlate_endpoints,
    map_endpoints,
    request_spans,
)
from tasks.agents.database.sqlcapture import capture_env, read_statements, sql_log_dir
from tasks.agents.database.sqlite.analysis import ANALYSIS_BUDGET_S, analyze_sqlite
from tasks.agents.database.sqlite.from_profile import SOURCE as FROM_PROFILE_SOURCE
from tasks.agents.database.sqlite.from_profile import analyze_profiled, profiled_statements
from tasks.agents.database.sqlite.locks import lock_contention
from tasks.agents.database.sqlite.util import database_file
from tasks.db.url import is_postgres_url
from tasks.findings import Candidate, Finding, Severity
from tasks.spec import TargetSpec, fill

__all__ = ["DatabaseAgent", "endpoint_names", "sql_log_dir"]

FLUSH_WAIT_S = 1.0  # the capture writes every 0.25 s, one interval late
STOP_GRACE_S = 30.0  # profile gives up waiting for ctx.stop this long after the planned window
INDEX_HIGH_RATIO = 10.0  # the index makes its statements this much faster (90 % of their cost gone) ...
INDEX_HIGH_MIN_SHARE = 0.1  # ... and they hold this share of the window's database time: high severity
WHATIF_MIN_RATIO = 2.0  # propose an index only when the copy ran this much faster with it
WHATIF_MIN_SAVED_MS = 0.02  # ... and saved at least this per call
SLOW_QUERY_P95_MS = 10.0
SLOW_QUERY_MIN_SHARE = 0.05  # or a statement taking this share of all DB time with p95 >= 1 ms
CAPTURE_SOURCE = "captured statements (injected capture), EXPLAIN QUERY PLAN, what-if on a copy"
PROFILE_SOURCE = FROM_PROFILE_SOURCE


def index_severity(share: float, ratio: float) -> Severity:
    """A measured what-if that removes nearly all the cost of statements holding a fair share of the
    database's time is high, whatever the share's own level says."""
    if ratio >= INDEX_HIGH_RATIO and share >= INDEX_HIGH_MIN_SHARE:
        return "high"
    return severity_for_share(share)


def _index_location(table: str, columns: list[str]) -> str:
    return f"{table}.{columns[0]}" if len(columns) == 1 else f"{table}({','.join(columns)})"


class DatabaseAgent:
    name = "database"
    layer = "database"

    def applies_to(self, spec: TargetSpec) -> bool:
        return spec.database is not None

    def target_env(self, workdir: Path) -> dict[str, str]:
        """Env vars to start the target with so its SQL statements (sqlite3, psycopg 3) are captured."""
        return capture_env(sql_log_dir(workdir))

    def _database_url(self, ctx: AgentContext) -> str:
        assert ctx.spec.database is not None
        return ctx.database_url or fill(ctx.spec.database.url, workdir=ctx.workdir)

    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        url = self._database_url(ctx)
        if is_postgres_url(url):
            return profile_postgres(ctx, url)
        db_path = database_file(url, ctx.spec.spec_dir)
        started = time.time()
        ctx.stop.wait(timeout=ctx.window_s + STOP_GRACE_S)
        ended = time.time()
        time.sleep(FLUSH_WAIT_S)
        warmup = min(ctx.spec.load.warmup_s, (ended - started) / 2)
        since = started + warmup
        log_dir = sql_log_dir(ctx.workdir)
        observed = analyze_sqlite(db_path, log_dir, since=since, until=ended, workdir=ctx.workdir,
                                  budget_s=ANALYSIS_BUDGET_S)
        if observed["statements_captured"] == 0 and warmup > 0:  # a short window: keep the warm-up
            observed = analyze_sqlite(db_path, log_dir, since=started, until=ended, workdir=ctx.workdir,
                                      budget_s=ANALYSIS_BUDGET_S)
        return observed

    def findings(self, ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> list[Finding]:
        if observed.get("backend") == "postgresql":
            return findings_postgres(ctx, observed, samples)
        if "skipped" in observed:
            return []
        allow_ddl = bool(ctx.spec.database and ctx.spec.database.allow_ddl)
        if not observed.get("statements_captured"):
            return self._from_profile(ctx, observed, allow_ddl)
        names = endpoint_names(ctx, observed, samples)
        out = [f for c in observed.get("index_candidates", []) if (f := _missing_index(c, names, allow_ddl))]
        out += _slow_queries(observed, names)
        out += [n_plus_one_finding(row, names) for row in observed.get("n_plus_one", [])]
        out += [_unused_index(row, observed) for row in observed.get("unused_indexes", [])]
        if contention := lock_contention(observed):
            out.append(contention)
        if overhead := framework_overhead_finding(observed.get("housekeeping")):
            out.append(overhead)
        return out


    def _from_profile(self, ctx: AgentContext, observed: dict[str, Any], allow_ddl: bool) -> list[Finding]:
        """No statement captured (an attached target): the SQL the profiler saw time in, if any."""
        statements = profiled_statements((ctx.peers.get("application") or {}).get("cpu_profile"))
        if not statements or not observed.get("database"):
            return []
        profiled = analyze_profiled(Path(observed["database"]), statements, workdir=ctx.workdir,
                                    budget_s=ANALYSIS_BUDGET_S)
        observed["from_profile"] = profiled
        return [f for c in profiled["index_candidates"] if (f := _missing_index(c, {}, allow_ddl, PROFILE_SOURCE))]


def endpoint_names(ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> dict[str, str]:
    """Endpoint template -> Locust name: a name the requests carried is itself; then by path
    template; then by time correlation."""
    templates = _templates(observed)
    sample_names = samples["endpoint"].unique().to_list() if "endpoint" in samples.columns else []
    names = {t: t for t in templates if t in set(sample_names)}
    names |= {t: n for t, n in map_endpoints(templates, [(e.name, e.path) for e in ctx.spec.load.endpoints],
                                             sample_names).items() if t not in names}
    since, until = observed.get("window", [None, None])
    if templates - names.keys() and {"ts", "latency_ms"} <= set(samples.columns):
        statements = read_statements(sql_log_dir(ctx.workdir), since, until)
        if not statements.is_empty():
            spans = request_spans(add_endpoint_column(statements))
            by_time = correlate_endpoints(spans, samples)
            names.update({t: n for t, n in by_time.items() if t in templates and t not in names})
    return names


def _templates(observed: dict[str, Any]) -> set[str]:
    found = {e["endpoint"] for e in observed.get("endpoints", [])}
    found |= {e["endpoint"] for s in observed.get("statements", []) for e in s["endpoints"]}
    found |= {r["endpoint"] for r in observed.get("n_plus_one", [])}
    return {t for t in found if t}


def _top_endpoint(endpoints: list[dict], names: dict[str, str]) -> str | None:
    for e in sorted(endpoints, key=lambda e: e["total_ms"], reverse=True):
        if e["endpoint"]:
            return names.get(e["endpoint"], e["endpoint"])
    return None


def _named(endpoints: list[dict], names: dict[str, str]) -> list[dict]:
    return [dict(e, endpoint=names.get(e["endpoint"], e["endpoint"])) for e in endpoints]


def _missing_index(cand: dict[str, Any], names: dict[str, str], allow_ddl: bool,
                   sources: str = CAPTURE_SOURCE) -> Finding | None:
    w = cand.get("whatif")
    if not w or not w["index_used"] or w["ratio"] < WHATIF_MIN_RATIO:
        return None
    if w["before_ms"] - w["after_ms"] < WHATIF_MIN_SAVED_MS:
        return None
    table, columns = cand["table"], list(cand["columns"])
    endpoint = _top_endpoint(cand["endpoints"], names)
    gain = 1 - w["after_ms"] / w["before_ms"]
    candidate = None
    if allow_ddl:
        candidate = Candidate(
            kind="create_index",
            params={"table": table, "columns": columns, "name": cand["name"]},
            description=f"CREATE INDEX {cand['name']} ON {table}({', '.join(columns)}): "
                        f"{w['before_ms']:.3g} -> {w['after_ms']:.3g} ms per call on a copy",
            risk="low", expected_gain=round(gain, 4), endpoint=endpoint,
        )
    evidence = {
        "statements": cand["statements"], "calls": cand["calls"], "mean_ms": cand["mean_ms"],
        "p95_ms": cand["p95_ms"], "db_time_share": cand["share"], "plan": cand["plans_before"],
        "plans_with_index": w["plans_after"], "whatif": {k: v for k, v in w.items() if k != "plans_after"},
        "endpoints": _named(cand["endpoints"], names), "index": cand["name"], "sources": sources,
        **({"share_basis": cand["share_basis"]} if "share_basis" in cand else {}),
    }
    return Finding(
        agent="database", kind="missing_index", location=_index_location(table, columns),
        severity=index_severity(cand["share"], w["ratio"]), evidence=evidence, endpoint=endpoint,
        estimated_gain={"ms_per_call_before": w["before_ms"], "ms_per_call_after": w["after_ms"],
                        "ratio": w["ratio"], "db_time_share": cand["share"], "measured_on": "copy"},
        candidate=candidate,
    )


def _slow_queries(observed: dict[str, Any], names: dict[str, str]) -> list[Finding]:
    out = []
    for s in observed.get("statements", []):
        slow = s["p95_ms"] >= SLOW_QUERY_P95_MS or (s["share"] >= SLOW_QUERY_MIN_SHARE and s["p95_ms"] >= 1.0)
        if not slow:
            continue
        evidence = {k: s[k] for k in ("statement", "calls", "total_ms", "mean_ms", "p50_ms", "p95_ms", "max_ms",
                                      "rows_mean", "share", "plan", "full_scans")}
        evidence["endpoints"] = _named(s["endpoints"], names)
        evidence |= {k: s.get(k) for k in CALL_SITE_KEYS}
        out.append(Finding(
            agent="database", kind="slow_query",
            location=statement_location(s["tables"], s.get("call_site"), s["statement"]),
            severity=severity_for_share(s["share"]), evidence=evidence,
            endpoint=_top_endpoint(s["endpoints"], names),
            estimated_gain={"db_time_share": s["share"], "total_ms": s["total_ms"]},
        ))
    return out


def _unused_index(row: dict[str, Any], observed: dict[str, Any]) -> Finding:
    return Finding(
        agent="database", kind="unused_index", location=_index_location(row["table"], row["columns"]),
        severity="low",
        evidence={"index": row["name"], "table": row["table"], "columns": row["columns"],
                  "partial": row["partial"], "statements_explained": observed.get("explained", 0),
                  "note": "no plan of the statements captured in this window used it; writes still pay for it"},
    )
