"""The tracing agent: per-request breakdowns from the target's own OpenTelemetry spans.

Applies when the spec says ``start.tracing: opentelemetry``: the lifecycle then starts the
target under ``opentelemetry-instrument`` with its spans sent to the process-wide OTLP
receiver (tasks.tracing). ``profile`` waits for the window to end and for the exports to go
quiet, drains the window's spans and breaks them down per endpoint (DB time share, DB calls
and spans per request); the span rows ride along under ``SPANS_KEY`` for the store's
``spans`` table. ``findings`` reports ``db_time_share`` for endpoints whose time the DB
dominates.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from tasks.agents.base import AgentContext
from tasks.agents.database.sql.stats import map_endpoints
from tasks.findings import Finding, Severity
from tasks.spec import TargetSpec
from tasks.tracing import SPANS_KEY, cap_spans, current_receiver, endpoint_breakdown

STOP_GRACE_S = 30.0  # profile gives up waiting for ctx.stop this long after the planned window
FLUSH_QUIET_S = 0.5  # exports are over once none came for this long (the SDK sends every 0.2 s)
FLUSH_GRACE_S = 1.5  # ... or after this long past the window's end, whatever came by then
DB_SHARE_THRESHOLD = 0.5  # report an endpoint when the DB takes at least this share of its time
DB_SHARE_HIGH = 0.8
MIN_REQUESTS = 5  # traced requests an endpoint needs before it is judged
NO_SPANS_NOTE = ("no spans arrived: does the target's environment have opentelemetry-exporter-otlp-proto-http "
                 "and an instrumentation for its framework (e.g. opentelemetry-instrumentation-starlette)?")


class TracingAgent:
    name = "tracing"
    layer = "application"

    def applies_to(self, spec: TargetSpec) -> bool:
        return spec.start is not None and spec.start.tracing == "opentelemetry"

    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        started = time.time()
        ctx.stop.wait(timeout=ctx.window_s + STOP_GRACE_S)
        ended = time.time()
        receiver = current_receiver()
        if receiver is None:
            return {"skipped": "no OTLP receiver runs: the target was not started by perfagents with tracing"}
        flushed = receiver.wait_quiet(FLUSH_QUIET_S, FLUSH_GRACE_S)
        spans = receiver.drain(since=started, until=ended)
        measured_since = started + min(ctx.spec.load.warmup_s, (ended - started) / 2)
        breakdown = endpoint_breakdown(spans, since=measured_since)
        if breakdown["requests"] == 0 and spans:  # a short window: keep the warm-up
            measured_since = started
            breakdown = endpoint_breakdown(spans, since=started)
        stored = cap_spans(spans)
        note = None if spans else NO_SPANS_NOTE
        kinds: dict[str, int] = {}
        for span in spans:
            kinds[span["kind"]] = kinds.get(span["kind"], 0) + 1
        return {
            "window": [started, ended], "measured_since": measured_since,
            "flush_s": round(time.time() - ended, 3), "flushed": flushed,
            "receiver": receiver.stats(), "spans": len(spans), "spans_by_kind": kinds,
            "traces": len({s["trace_id"] for s in spans}), "spans_stored": len(stored), "note": note,
            **breakdown, SPANS_KEY: stored,
        }

    def findings(self, ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> list[Finding]:
        rows = [r for r in observed.get("endpoints", []) if r["requests"] >= MIN_REQUESTS]
        names = map_endpoints(
            [r["endpoint"] for r in rows],
            [(e.name, e.path) for e in ctx.spec.load.endpoints],
            samples["endpoint"].unique().to_list() if "endpoint" in samples.columns else [],
        )
        return [_db_time_share(r, names.get(r["endpoint"], r["endpoint"]))
                for r in rows if r["db_share"] >= DB_SHARE_THRESHOLD]


def _db_time_share(row: dict[str, Any], endpoint: str) -> Finding:
    severity: Severity = "high" if row["db_share"] >= DB_SHARE_HIGH else "medium"
    evidence = {
        "requests": row["requests"], "db_share": row["db_share"],
        "db_calls_per_request": row["db_calls_per_request"], "db_ms_per_request": row["db_ms_mean"],
        "p95_server_ms": row["server_ms_p95"], "mean_server_ms": row["server_ms_mean"],
        "spans_per_request": row["spans_per_request"], "route": row["endpoint"], "method": row["method"],
        "top_statements": row["top_statements"], "source": "OpenTelemetry spans",
    }
    return Finding(
        agent="tracing", kind="db_time_share", location=endpoint, severity=severity,
        evidence=evidence, endpoint=endpoint,
        # an upper bound: a request cannot get faster than its time outside the DB
        estimated_gain={"db_time_share": row["db_share"], "max_ms_per_request": row["db_ms_mean"],
                        "measured_on": "trace spans"},
    )
