"""Per-endpoint DB time share from span records (hand-made traces with known answers)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tasks.tracing import cap_spans, endpoint_breakdown, spans_frame
from tasks.tracing.spans import SpanRecord

_ids = itertools.count(1)


def span(trace: str, kind: str, name: str, start: float, ms: float, parent: SpanRecord | None = None,
         **attributes: Any) -> SpanRecord:
    return {"trace_id": trace, "span_id": f"{next(_ids):016x}", "parent_id": parent["span_id"] if parent else None,
            "name": name, "kind": kind, "start_ts": start, "duration_ms": ms, "attributes": attributes}


def request(trace: str, route: str, start: float, ms: float, db_ms: list[float]) -> list[SpanRecord]:
    """A SERVER span, an INTERNAL handler span below it, and the DB calls below that."""
    server = span(trace, "SERVER", f"GET {route}", start, ms, **{"http.route": route, "http.request.method": "GET"})
    handler = span(trace, "INTERNAL", "handler", start, ms * 0.9, server)
    db = [span(trace, "CLIENT", "SELECT", start + 0.001, d, handler, **{"db.system": "sqlite",
                                                                          "db.statement": f"SELECT {d}"})
          for d in db_ms]
    return [server, handler, *db]


def test_db_share_per_endpoint_counts_descendants_only() -> None:
    spans = request("t1", "/items/{id}", 10.0, 10.0, [3.0, 3.0]) + request("t2", "/items/{id}", 11.0, 10.0, [5.0])
    spans += request("t3", "/ping", 12.0, 4.0, [])
    result = endpoint_breakdown(spans)
    rows = {r["endpoint"]: r for r in result["endpoints"]}
    items, ping = rows["/items/{id}"], rows["/ping"]
    assert items["requests"] == 2 and items["db_share"] == pytest.approx(11 / 20)
    assert items["db_calls_per_request"] == 1.5 and items["spans_per_request"] == 3.5
    assert items["top_statements"] == [{"statement": "SELECT 3.0", "calls": 2, "total_ms": 6.0},
                                       {"statement": "SELECT 5.0", "calls": 1, "total_ms": 5.0}]
    assert ping["db_share"] == 0 and ping["db_calls_per_request"] == 0
    assert result["requests"] == 3 and result["unattributed_db_spans"] == 0


def test_nested_db_spans_count_once_and_concurrent_ones_are_capped() -> None:
    spans = request("t1", "/report", 10.0, 10.0, [8.0, 8.0])  # two concurrent 8 ms queries in 10 ms
    inner = span("t1", "CLIENT", "SELECT", 10.002, 7.0, spans[2], **{"db.system": "sqlite"})
    row = endpoint_breakdown([*spans, inner])["endpoints"][0]
    assert row["db_calls_per_request"] == 2  # the nested one is part of its parent
    assert row["db_share"] == 1.0


def test_downstream_server_spans_are_their_own_requests_and_orphans_are_counted() -> None:
    upstream = request("t1", "/checkout", 10.0, 20.0, [2.0])
    downstream = request("t1", "/stock", 10.005, 10.0, [9.0])
    downstream[0]["parent_id"] = upstream[1]["span_id"]  # called from the upstream handler
    orphan = span("t9", "CLIENT", "SELECT", 10.0, 1.0, None, **{"db.system": "sqlite"})
    result = endpoint_breakdown([*upstream, *downstream, orphan])
    rows = {r["endpoint"]: r for r in result["endpoints"]}
    assert rows["/checkout"]["db_ms_total"] == 2.0 and rows["/stock"]["db_ms_total"] == 9.0
    assert result["unattributed_db_spans"] == 1


def test_since_drops_earlier_requests() -> None:
    spans = request("t1", "/a", 10.0, 10.0, [1.0]) + request("t2", "/a", 20.0, 10.0, [9.0])
    row = endpoint_breakdown(spans, since=15.0)["endpoints"][0]
    assert row["requests"] == 1 and row["db_share"] == pytest.approx(0.9)


def test_cap_keeps_whole_traces_earliest_first() -> None:
    spans = [s for i in range(10) for s in request(f"t{i}", "/a", 10.0 + i, 5.0, [1.0])]  # 3 spans each
    kept = cap_spans(spans, limit=10)
    assert len(kept) == 9 and {s["trace_id"] for s in kept} == {"t0", "t1", "t2"}
    assert cap_spans(spans, limit=100) is spans


def test_spans_frame_matches_the_store_table(tmp_path: Any) -> None:
    from tasks.store import Store

    spans = request("t1", "/items/{id}", 10.0, 10.0, [3.0])
    with Store(tmp_path / "s.duckdb") as store:
        with store.transaction():
            assert store.insert_frame("spans", spans_frame(spans, "w1")) == 3
        rows = store.rows("SELECT name, kind, parent_id, attributes->>'db.system' AS db FROM spans "
                          "WHERE window_id = 'w1' ORDER BY start_ts, kind DESC")
    assert [(r["kind"], r["db"]) for r in rows] == [("SERVER", None), ("INTERNAL", None), ("CLIENT", "sqlite")]
    assert rows[0]["parent_id"] is None
