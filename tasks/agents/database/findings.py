"""Finding builders both paths of the database agent share (SQLite: agent.py, PostgreSQL: postgres/agent.py).

A severity from a share of the window's database time, the ``n_plus_one`` finding from a
row of tasks.agents.database.sql.stats.find_n_plus_one (plus its call_sites fields), and the
``framework_overhead`` finding from tasks.agents.database.sql.housekeeping.summarize.
"""

from __future__ import annotations

from typing import Any

from tasks.findings import Finding, Severity

SEVERITY_SHARE = (("high", 0.3), ("medium", 0.1))  # share of the window's DB time
N_PLUS_ONE_HIGH = (50, 20.0)  # median repeats per request, or ms per request
N_PLUS_ONE_MEDIUM = (10, 5.0)
CALL_SITE_KEYS = ("call_site", "stack", "other_stacks")  # tasks.agents.database.call_sites fields shown in evidence


def severity_for_share(share: float) -> Severity:
    for level, threshold in SEVERITY_SHARE:
        if share >= threshold:
            return level  # type: ignore[return-value]
    return "low"


def n_plus_one_finding(row: dict[str, Any], names: dict[str, str]) -> Finding:
    """An ``n_plus_one`` finding from a sql_stats.find_n_plus_one row (plus its call_sites fields).

    Located at the statement's call site (the code that loops), else at its endpoint; ``names``
    maps endpoint templates to Locust names. Without the capture's own request ids (requests
    guessed from thread bursts) the severity is at most medium.
    """
    endpoint = names.get(row["endpoint"], row["endpoint"]) if row["endpoint"] else None
    median, ms = row["count_median"], row["ms_per_request"]
    if median >= N_PLUS_ONE_HIGH[0] or ms >= N_PLUS_ONE_HIGH[1]:
        severity: Severity = "high"
    elif median >= N_PLUS_ONE_MEDIUM[0] or ms >= N_PLUS_ONE_MEDIUM[1]:
        severity = "medium"
    else:
        severity = "low"
    if not row["attributed"] and severity == "high":
        severity = "medium"  # requests guessed from thread bursts: a guess alone is never high
    evidence = {
        "statement": row["statement"], "endpoint_template": row["endpoint"],
        "requests_with_repeats": row["requests"], "endpoint_requests": row["endpoint_requests"],
        "count_per_request": {"min": row["count_min"], "median": median, "p95": row["count_p95"],
                              "max": row["count_max"], "distribution": row["distribution"]},
        "mean_ms": row["mean_ms"], "ms_per_request": ms,
        "attribution": "request" if row["attributed"] else "thread+time (approximate)",
        **{k: row.get(k) for k in CALL_SITE_KEYS},
    }
    location = row.get("call_site") or endpoint or "unknown endpoint"
    return Finding(
        agent="database", kind="n_plus_one", location=location, severity=severity,
        evidence=evidence, endpoint=endpoint,
        estimated_gain={"statements_per_request_before": median, "statements_per_request_after": 1,
                        "estimated_ms_per_request_saved": round(max(ms - row["mean_ms"], 0.0), 4),
                        "basis": "estimate: one batched statement costing one call"},
    )


OVERHEAD_MIN_SHARE = 0.02  # housekeeping below this share of the database time is not worth a finding


def framework_overhead_finding(summary: dict[str, Any] | None) -> Finding | None:
    """One ``framework_overhead`` finding for the stack's housekeeping statements
    (tasks.agents.database.sql.housekeeping.summarize), at most medium: no index fixes it, and
    it is never ranked as a slow query or an N+1."""
    if not summary or summary["share"] < OVERHEAD_MIN_SHARE:
        return None
    severity: Severity = "medium" if severity_for_share(summary["share"]) != "low" else "low"
    return Finding(
        agent="database", kind="framework_overhead", location="schema introspection and session settings",
        severity=severity, evidence={**summary, "note": "statements the framework or driver runs for itself "
                                     "(catalog reads, PRAGMA/SET/SHOW, version probes): cache the metadata or "
                                     "reuse connections to cut them"},
        estimated_gain={"db_time_share": summary["share"], "total_ms": summary["total_ms"]},
    )
