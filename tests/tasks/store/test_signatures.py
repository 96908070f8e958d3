"""Run signatures: migration 3, written from a run's windows, read back as a target's history."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tasks.results.signature import load_shape, record_signature
from tasks.spec import LoadSpec
from tasks.store import MIGRATIONS, Store


def test_migration_3_creates_signatures(store: Store) -> None:
    assert (3, "run signatures") in [(m[0], m[1]) for m in MIGRATIONS]  # later ones follow it
    applied = {r["version"] for r in store.rows("SELECT version FROM schema_migrations")}
    assert applied == {m[0] for m in MIGRATIONS}
    assert store.rows("SELECT count(*) AS n FROM signatures")[0]["n"] == 0


def test_signature_summarises_the_windows_per_endpoint(store: Store, add_history_run) -> None:
    ids = add_history_run(store, "r1", day=0)
    rows = {r["endpoint"]: r for r in store.signature_history("shop")}
    assert set(rows) == {"catalog", "checkout", "__total__"}
    stats = store.rows("SELECT endpoint, p95_ms, rps, requests FROM endpoint_stats WHERE endpoint = 'checkout'")
    assert len(stats) == 3
    from math import exp, log
    geo = exp(sum(log(s["p95_ms"]) for s in stats) / 3)
    checkout = rows["checkout"]
    assert checkout["p95_ms"] == pytest.approx(geo) and checkout["windows"] == 3 and checkout["requests"] == 900
    assert checkout["rps"] == pytest.approx(sum(s["rps"] for s in stats) / 3)
    assert checkout["error_rate"] == 0 and checkout["bytes_per_response"] == 200
    assert rows["catalog"]["bytes_per_response"] == 1000 and rows["catalog"]["p50_ms"] < checkout["p50_ms"]
    total = rows["__total__"]
    # 60% of a core over ~10 s of measured part, 600 requests a window: ~10 ms of CPU a request
    assert 8 < total["cpu_ms_per_request"] < 11
    assert total["db_time_share"] is None and checkout["cpu_ms_per_request"] is None  # no traces; CPU is not split
    assert store.save_signature("r1", "shop", "shape0", ids) == 3  # written again: replaced, not doubled
    assert len(store.signature_history("shop")) == 3


def test_db_time_share_from_profiling_spans(store: Store, add_history_run) -> None:
    ids = add_history_run(store, "r1", day=0)
    import polars as pl
    spans = pl.DataFrame({"trace_id": ["t"] * 3, "span_id": ["a", "b", "c"], "parent_id": [None, "a", "a"],
                          "name": ["GET /x", "SELECT", "render"], "kind": ["SERVER", "CLIENT", "INTERNAL"],
                          "start_ts": [0.0, 0.0, 0.0], "duration_ms": [10.0, 4.0, 2.0],
                          "attributes": ['{}', '{"db.system": "sqlite"}', '{}']})
    store.insert_window_frame("spans", "p1", spans)
    store.save_signature("r1", "shop", "shape0", ids, ["p1"])
    total = next(r for r in store.signature_history() if r["endpoint"] == "__total__")
    assert total["db_time_share"] == pytest.approx(0.4)


def test_record_signature_uses_the_kept_states_valid_windows(store: Store, add_history_run) -> None:
    ids = add_history_run(store, "r1", day=0)
    windows = [SimpleNamespace(window_id=i, valid=True) for i in ids[:2]] + [SimpleNamespace(window_id="x", valid=False)]
    load = LoadSpec.model_validate({"endpoints": [{"name": "home", "path": "/"}], "users": 5})
    run = SimpleNamespace(noise=SimpleNamespace(kept_aa=windows), rt=SimpleNamespace(config={}), store=store,
                          run_id="r1", spec=SimpleNamespace(name="shop", load=load))
    assert record_signature(run) == 3  # type: ignore[arg-type]
    rows = store.signature_history("shop")
    assert {r["windows"] for r in rows} == {2} and {r["load_shape"] for r in rows} == {load_shape(load)}
    other = LoadSpec.model_validate({"endpoints": [{"name": "home", "path": "/"}], "users": 50})
    assert load_shape(other) != load_shape(load)
    run.noise.kept_aa = []
    assert record_signature(run) == 0  # type: ignore[arg-type]


def test_migration_6_gives_stored_windows_and_signatures_their_geometric_mean(tmp_path, add_history_run) -> None:
    """Windows and signatures written before migration 6 get ``gmean_ms`` from the samples they
    keep: the same values a window written now gets; a read-only open of the old store reads it as NULL."""
    from math import exp, log

    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        ids = add_history_run(store, "r1", day=0)
        now_written = {(r["window_id"], r["endpoint"]): r["gmean_ms"]
                       for r in store.rows("SELECT window_id, endpoint, gmean_ms FROM endpoint_stats")}
        signature = {r["endpoint"]: r["gmean_ms"] for r in store.signature_history("shop")}
        with store.transaction() as con:  # back to the schema before migration 6
            con.execute("ALTER TABLE endpoint_stats DROP COLUMN gmean_ms")
            con.execute("ALTER TABLE signatures DROP COLUMN gmean_ms")
            con.execute("DELETE FROM schema_migrations WHERE version = 6")
    with Store(path, read_only=True) as old:
        assert {r["gmean_ms"] for r in old.signature_history("shop")} == {None}
        assert {r["gmean_ms"] for r in old.aa_window_stats("shop")} == {None}
    with Store(path) as store:
        backfilled = {(r["window_id"], r["endpoint"]): r["gmean_ms"]
                      for r in store.rows("SELECT window_id, endpoint, gmean_ms FROM endpoint_stats")}
        assert backfilled == pytest.approx(now_written, abs=1e-3) and len(backfilled) == 3 * len(ids)
        assert {r["endpoint"]: r["gmean_ms"] for r in store.signature_history("shop")} == pytest.approx(signature, rel=1e-6)
        checkout = [now_written[(i, "checkout")] for i in ids]
        assert signature["checkout"] == pytest.approx(exp(sum(log(v) for v in checkout) / len(checkout)))
        assert store.migrate() == []
