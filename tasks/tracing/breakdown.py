"""Per-request breakdown of traced requests: how much of each endpoint's time is spent in the DB.

A request is a SERVER span; its endpoint is ``http.route`` (else the span name). Its DB time
is the summed duration of the DB spans (``db.system`` set) below it in its trace, outermost
DB spans only and capped at the request's own duration (concurrent queries could otherwise
add up to more). A SERVER span below another (a downstream service) is its own request and
not part of the upper one's DB time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from tasks.tracing.spans import SpanRecord

DB_SYSTEM_KEYS = ("db.system", "db.system.name")  # old and new semantic conventions
STATEMENT_KEYS = ("db.statement", "db.query.text")
METHOD_KEYS = ("http.request.method", "http.method")
STATUS_KEYS = ("http.response.status_code", "http.status_code")
TOP_STATEMENTS = 3  # per endpoint, by DB time
STATEMENT_CHARS = 200


def is_db_span(span: SpanRecord) -> bool:
    return any(key in span["attributes"] for key in DB_SYSTEM_KEYS)


def endpoint_breakdown(spans: list[SpanRecord], since: float | None = None) -> dict[str, Any]:
    """Rows per (service, method, endpoint) for the SERVER spans that started at ``since`` or later."""
    children: dict[tuple[str, str], list[SpanRecord]] = defaultdict(list)
    for span in spans:
        if span["parent_id"]:
            children[(span["trace_id"], span["parent_id"])].append(span)
    requests: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    statements: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(dict)
    attributed: set[tuple[str, str]] = set()
    for span in spans:
        if span["kind"] != "SERVER" or (since is not None and span["start_ts"] < since):
            continue
        key = _endpoint_key(span)
        request = _walk(span, children, attributed, statements[key])
        requests[key].append(request)
    db_spans = [s for s in spans if is_db_span(s) and (since is None or s["start_ts"] >= since)]
    rows = [_row(key, reqs, statements[key]) for key, reqs in requests.items()]
    rows.sort(key=lambda r: r["server_ms_total"], reverse=True)
    return {
        "requests": sum(r["requests"] for r in rows),
        "db_spans": len(db_spans),
        "unattributed_db_spans": sum((s["trace_id"], s["span_id"]) not in attributed for s in db_spans),
        "endpoints": rows,
    }


def _endpoint_key(span: SpanRecord) -> tuple[str, str, str]:
    attrs = span["attributes"]
    method = next((str(attrs[k]) for k in METHOD_KEYS if k in attrs), "")
    route = attrs.get("http.route") or span["name"]
    return str(attrs.get("service.name", "")), method, str(route)


def _walk(server: SpanRecord, children: dict[tuple[str, str], list[SpanRecord]],
          attributed: set[tuple[str, str]], statements: dict[str, list[float]]) -> dict[str, Any]:
    db_ms, db_calls, span_count = 0.0, 0, 1
    stack = list(children.get((server["trace_id"], server["span_id"]), ()))
    while stack:
        span = stack.pop()
        if span["kind"] == "SERVER":
            continue  # another service's request
        span_count += 1
        if is_db_span(span):
            db_ms += span["duration_ms"]
            db_calls += 1
            attributed.add((span["trace_id"], span["span_id"]))
            calls_ms = statements.setdefault(_statement(span), [0, 0.0])
            calls_ms[0] += 1
            calls_ms[1] += span["duration_ms"]
            continue  # a DB span's own children are part of it
        stack.extend(children.get((span["trace_id"], span["span_id"]), ()))
    attrs = server["attributes"]
    status = next((attrs[k] for k in STATUS_KEYS if k in attrs), None)
    failed = attrs.get("otel.status_code") == "ERROR" or (isinstance(status, int) and status >= 500)
    return {"server_ms": server["duration_ms"], "db_ms": min(db_ms, server["duration_ms"]),
            "db_calls": db_calls, "spans": span_count, "failed": failed}


def _statement(span: SpanRecord) -> str:
    attrs = span["attributes"]
    text = next((str(attrs[k]) for k in STATEMENT_KEYS if k in attrs), span["name"])
    return " ".join(text.split())[:STATEMENT_CHARS]


def _row(key: tuple[str, str, str], reqs: list[dict[str, Any]],
         statements: dict[str, list[float]]) -> dict[str, Any]:
    service, method, endpoint = key
    server = np.array([r["server_ms"] for r in reqs])
    db = np.array([r["db_ms"] for r in reqs])
    n = len(reqs)
    total = float(server.sum())
    top = sorted(statements.items(), key=lambda item: item[1][1], reverse=True)[:TOP_STATEMENTS]
    return {
        "service": service, "method": method, "endpoint": endpoint, "requests": n,
        "errors": sum(r["failed"] for r in reqs),
        "server_ms_total": round(total, 3),
        "server_ms_mean": round(total / n, 3),
        "server_ms_p50": round(float(np.percentile(server, 50)), 3),
        "server_ms_p95": round(float(np.percentile(server, 95)), 3),
        "db_ms_total": round(float(db.sum()), 3),
        "db_ms_mean": round(float(db.mean()), 3),
        "db_share": round(float(db.sum()) / total, 4) if total > 0 else 0.0,
        "db_calls_per_request": round(sum(r["db_calls"] for r in reqs) / n, 3),
        "spans_per_request": round(sum(r["spans"] for r in reqs) / n, 3),
        "top_statements": [{"statement": text, "calls": int(calls), "total_ms": round(ms, 3)}
                           for text, (calls, ms) in top],
    }
