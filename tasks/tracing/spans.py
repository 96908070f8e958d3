"""Span records as the receiver keeps them and the store's ``spans`` table holds them.

A record is a flat dict (JSON-safe, so it may travel in an agent's observed dict):

    trace_id     32 hex digits
    span_id      16 hex digits
    parent_id    16 hex digits, or None for a root span
    name         the span name (``GET /items/{id}``, ``SELECT``, ...)
    kind         SERVER | CLIENT | INTERNAL | PRODUCER | CONSUMER | UNSPECIFIED
    start_ts     epoch seconds
    duration_ms  end - start
    attributes   the span's attributes, plus the resource's ``service.name`` and, when the
                 span has a status, ``otel.status_code`` (OK | ERROR)
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, TypedDict

import polars as pl

SPANS_KEY = "trace_spans"  # key of the span records in an agent's observed dict (save_window pops it)
MAX_STORED_SPANS = 20_000  # rows written to the store per window

SPANS_SCHEMA: dict[str, Any] = {
    "window_id": pl.String,
    "trace_id": pl.String,
    "span_id": pl.String,
    "parent_id": pl.String,
    "name": pl.String,
    "kind": pl.String,
    "start_ts": pl.Float64,
    "duration_ms": pl.Float64,
    "attributes": pl.String,  # JSON text; the column is JSON in DuckDB
}


class SpanRecord(TypedDict):
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ts: float
    duration_ms: float
    attributes: dict[str, Any]


def cap_spans(spans: list[SpanRecord], limit: int = MAX_STORED_SPANS) -> list[SpanRecord]:
    """At most ``limit`` spans, whole traces only, the earliest traces first."""
    if len(spans) <= limit:
        return spans
    sizes = Counter(s["trace_id"] for s in spans)
    first_start: dict[str, float] = {}
    for s in spans:
        trace = s["trace_id"]
        first_start[trace] = min(first_start.get(trace, s["start_ts"]), s["start_ts"])
    kept: set[str] = set()
    total = 0
    for trace in sorted(first_start, key=first_start.__getitem__):
        if total + sizes[trace] > limit:
            continue  # a smaller later trace may still fit
        kept.add(trace)
        total += sizes[trace]
    return [s for s in spans if s["trace_id"] in kept]


def spans_frame(spans: list[SpanRecord], window_id: str) -> pl.DataFrame:
    """Rows for the store's ``spans`` table (attributes as JSON text)."""
    return pl.DataFrame(
        {
            "window_id": [window_id] * len(spans),
            "trace_id": [s["trace_id"] for s in spans],
            "span_id": [s["span_id"] for s in spans],
            "parent_id": [s["parent_id"] for s in spans],
            "name": [s["name"] for s in spans],
            "kind": [s["kind"] for s in spans],
            "start_ts": [s["start_ts"] for s in spans],
            "duration_ms": [s["duration_ms"] for s in spans],
            "attributes": [json.dumps(s["attributes"], default=str, sort_keys=True) for s in spans],
        },
        schema=SPANS_SCHEMA,
    )
