"""Aggregation, N+1 detection (with and without request ids) and endpoint naming."""

from __future__ import annotations

import polars as pl

from tasks.agents.database.sql.stats import (
    add_statement_columns,
    aggregate_statements,
    attribute_requests,
    correlate_endpoints,
    find_n_plus_one,
    map_endpoints,
    path_template,
)
from tasks.agents.database.sqlcapture import STATEMENT_SCHEMA


def frame(rows: list[dict]) -> pl.DataFrame:
    full = [{k: r.get(k) for k in STATEMENT_SCHEMA} for r in rows]
    return add_statement_columns(pl.DataFrame(full, schema=STATEMENT_SCHEMA))


def stmt(ts: float, sql: str, ms: float = 1.0, rid: str | None = None, path: str | None = None, thread: int = 1):
    return {"ts": ts, "duration_ms": ms, "sql": sql, "pid": 1, "thread": thread, "request_id": rid, "path": path}


def test_aggregate_statements_by_shape():
    f = frame([stmt(i, f"select * from t where a = {i}", ms=float(i + 1)) for i in range(20)]
              + [stmt(30, "select 1", ms=10.0)])
    agg = aggregate_statements(f)
    top = agg.row(0, named=True)
    assert top["statement"] == "SELECT * FROM t WHERE a = ?" and top["calls"] == 20
    assert top["total_ms"] == sum(range(1, 21)) and abs(top["share"] - 210 / 220) < 1e-9
    assert 19 <= top["p95_ms"] <= 20


def test_n_plus_one_per_request():
    rows = []
    for r in range(3):
        rows.append(stmt(r, "select id from orders limit 10", rid=f"r{r}", path="/orders/latest"))
        rows += [stmt(r + k / 1000, f"select name from users where id = {k}", rid=f"r{r}", path="/orders/latest")
                 for k in range(6 + r)]
    rows += [stmt(10 + k, "select name from users where id = 1", rid=f"q{k}", path="/users/1") for k in range(9)]
    (found,) = find_n_plus_one(frame(rows))
    assert found["endpoint"] == "/orders/latest" and found["requests"] == found["endpoint_requests"] == 3
    assert (found["count_min"], found["count_max"]) == (6, 8) and found["distribution"] == {"6": 1, "7": 1, "8": 1}
    assert found["attributed"] is True


def test_n_plus_one_fallback_splits_threads_on_pauses():
    rows = [stmt(k * 0.0001, f"select * from t where id = {k}", ms=0.01) for k in range(8)]  # one burst
    rows += [stmt(5 + k * 0.01, f"select * from t where id = {k}", ms=0.01) for k in range(8)]  # 10 ms apart
    f = attribute_requests(frame(rows))
    assert f["request_id"].n_unique() == 1 + 8 and not f["attributed"].any()
    (found,) = find_n_plus_one(f)
    assert found["count_max"] == 8 and found["requests"] == 1 and found["attributed"] is False


def test_endpoint_templates_map_to_locust_names():
    assert path_template("/users/42/orders?x=1") == "/users/{n}/orders"
    names = map_endpoints(
        ["/users/{uid:int}/orders", "/orders/latest", "/items", "/health", "/users/{n}"],
        [("user_orders", "/users/{int:1:50}/orders"), ("items", "/items?page={int:1:5}")],
        ["user_orders", "/orders/latest", "/users/[id]"],
    )
    assert names == {"/users/{uid:int}/orders": "user_orders", "/items": "items", "/orders/latest": "/orders/latest"}


def test_correlation_by_time_ignores_an_always_in_flight_name():
    spans, samples = [], []
    for k in range(40):  # /a and /b alternate, 50 ms apart; "slow" is always in flight
        t = 100 + k * 0.05
        template, name = ("/a", "a_name") if k % 2 else ("/b", "b_name")
        samples.append({"ts": t, "latency_ms": 10.0, "endpoint": name, "method": "GET"})
        spans.append({"request_id": str(k), "endpoint": template, "method": "GET", "start": t + 0.002, "end": t + 0.008})
    samples += [{"ts": 99 + k * 0.5, "latency_ms": 800.0, "endpoint": "slow", "method": "GET"} for k in range(8)]
    samples.append({"ts": 100.0, "latency_ms": 5000.0, "endpoint": "post_only", "method": "POST"})
    names = correlate_endpoints(pl.DataFrame(spans), pl.DataFrame(samples))
    assert names == {"/a": "a_name", "/b": "b_name"}


def test_a_carried_request_name_is_the_endpoint_before_any_template():
    rows = [dict(stmt(1, "select 1", rid="r1", path="/users/7/orders"), request_name="user orders"),
            dict(stmt(2, "select 2", rid="r2", path="/users/8/orders"), route="/users/{uid}/orders"),
            stmt(3, "select 3", rid="r3", path="/users/9/orders")]
    assert frame(rows)["endpoint"].to_list() == ["user orders", "/users/{uid}/orders", "/users/{n}/orders"]


def test_a_guessed_n_plus_one_is_never_high():
    from tasks.agents.database.findings import n_plus_one_finding

    rows = [stmt(k * 0.0001, f"select * from t where id = {k}", ms=0.5) for k in range(60)]  # one burst, no ids
    (found,) = find_n_plus_one(attribute_requests(frame(rows)))
    guessed = n_plus_one_finding(found, {})
    assert guessed.severity == "medium" and guessed.evidence["attribution"] == "thread+time (approximate)"
    exact = n_plus_one_finding({**found, "attributed": True}, {})
    assert exact.severity == "high"
