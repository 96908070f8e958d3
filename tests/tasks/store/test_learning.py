"""The store's learning history: migration 4 (idempotent; an older store upgrades and its changes
are learned from), and the estimate + measurement rows the loop writes around a tried change."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tasks.findings import Candidate, Finding
from tasks.search.calibration import fit_calibration
from tasks.search.estimates import (
    effect_from_reason,
    estimate_of,
    fit_history,
    history,
    observations,
)
from tasks.store import MIGRATIONS, Store, now
from tasks.store.learning import RESTORED_REASON

INDEX = {"table": "orders", "columns": ["customer_id"], "name": "ix_orders_customer_id"}
SPEC = {"name": "shop", "knobs": {"workers": {"type": "int", "apply": {"env": "SHOP_WORKERS"},
                                              "description": "worker processes"}}}


def _old_store(path: Path) -> None:
    """A store as perfagents wrote it before the estimates migration, with one run: an index proposed by a
    finding and kept, a knob reverted, and a change restored from the kept state."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)")
    for version, name, sql in MIGRATIONS:
        if name == "change estimates":
            break
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, now()])
    t0 = now()
    con.execute("INSERT INTO runs (run_id, target, spec, started_at) VALUES ('r1', 'shop', ?, ?)", [json.dumps(SPEC), t0])
    con.execute("INSERT INTO windows (window_id, run_id, label, started_at) VALUES ('w1', 'r1', 'profile-1', ?)", [t0])
    candidate = {"kind": "create_index", "params": INDEX, "description": "ix", "risk": "low", "expected_gain": 0.97,
                 "endpoint": "orders"}
    con.execute("INSERT INTO findings (run_id, window_id, agent, kind, location, severity, evidence, estimated_gain, "
                "candidate) VALUES ('r1', 'w1', 'database', 'missing_index', 'orders.customer_id', 'high', '{}', ?, ?)",
                [json.dumps({"ratio": 33.0, "db_time_share": 0.7}), json.dumps(candidate)])
    changes = [("c1", 1, "create_index", INDEX, "kept", "faster", {"metric": "p50_ms", "ratio": 0.3, "ci95": [0.25, 0.36]}),
               # a revert's journal row kept no effect then: its reason still says it
               ("c2", 2, "set_knob", {"knob": "workers", "value": 2}, "reverted",
                "p50 x0.926 [0.725, 1.2] on total (5 vs 4 windows, latency): undecided", None),
               ("c0", 0, "create_index", INDEX, "kept", RESTORED_REASON, None)]
    for change_id, seq, kind, params, status, reason, effect in changes:
        con.execute("INSERT INTO changes (change_id, run_id, target, seq, kind, params, description, risk, status, "
                    "reason, effect, planned_at) VALUES (?, 'r1', 'shop', ?, ?, ?, 'd', 'low', ?, ?, ?, ?)",
                    [change_id, seq, kind, json.dumps(params), status, reason,
                     json.dumps(effect) if effect else None, now()])
    con.close()


def test_the_estimates_migration_is_idempotent_even_when_applied_again_under_another_number(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as st:
        assert st.has_estimates() and st.migrate() == []
        st.insert_estimate("c1", run_id="r1", target="shop", estimate={"change_kind": "set_knob", "basis": ""})
        # a merge that renumbers it: the record goes, the table stays, the migration runs again
        version = next(v for v, name, _ in MIGRATIONS if name == "change estimates")
        with st.session() as con:
            con.execute("DELETE FROM schema_migrations WHERE version = ?", [version])
        assert st.migrate() == [version]
        assert st.rows("SELECT change_id FROM change_estimates") == [{"change_id": "c1"}]


def test_an_older_store_upgrades_and_its_changes_are_learned_from(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _old_store(path)
    with Store(path, read_only=True) as st:  # read-only: not migrated, still readable
        assert not st.has_estimates() and st.learning_rows() == [] and len(history(st)) == 2
    with Store(path) as st:
        versions = [r["version"] for r in st.rows("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [v for v, _, _ in MIGRATIONS]
        rows = {r["change_id"]: r for r in history(st)}
    assert set(rows) == {"c1", "c2"}  # the restored change was not tried
    index, knob = rows["c1"], rows["c2"]
    assert (index["kind"], index["expected_gain"], index["outcome"], index["source"]) == (
        "create_index/missing_index", 0.97, "kept", "rebuilt")
    assert (index["measured_ratio"], index["measured_lo"], index["measured_hi"]) == (0.3, 0.25, 0.36)
    assert (knob["kind"], knob["expected_gain"], knob["outcome"]) == ("set_knob/no_finding", 0.1, "reverted")
    assert (knob["metric"], knob["measured_ratio"], knob["measured_lo"], knob["measured_hi"]) == (
        "p50_ms", 0.926, 0.725, 1.2)
    assert len(observations(rows.values())) == 2


def test_a_legacy_reason_gives_back_its_effect() -> None:
    assert effect_from_reason("rps x1.95 [1.71, 2.23] on total (5 vs 2 windows, saturated): faster") == {
        "metric": "rps", "ratio": 1.95, "ci95": [1.71, 2.23]}
    assert effect_from_reason("p95 ratio 0.864 [0.783, 0.985] within noise 0.1")["ratio"] == 0.864
    assert effect_from_reason("quality threshold broken: p99_ms<=1.1*baseline") == {}
    assert effect_from_reason(None) == {}


def test_a_tried_change_is_stored_with_its_estimate_and_its_measurement(store: Store) -> None:
    store.insert_run("r1", target="shop", scope="quick-win", flow="t", spec=SPEC, goals=[], quality=[], budget={},
                     code_version=None)
    finding = Finding("database", "missing_index", "orders.customer_id", "high", {"plan": "SCAN orders"},
                      {"ms_per_call_before": 52.5, "ms_per_call_after": 0.04, "ratio": 1229.0, "db_time_share": 0.8},
                      endpoint="orders",
                      candidate=Candidate("create_index", INDEX, "ix", expected_gain=0.999, endpoint="orders"))
    candidate = Candidate("create_index", INDEX, "ix", expected_gain=0.999, endpoint="orders", basis="missing_index")
    estimate = estimate_of(candidate, [finding])
    assert estimate is not None
    store.insert_change("c1", run_id="r1", target="shop", seq=1, kind="create_index", params=INDEX, description="ix",
                        risk="low")
    store.insert_estimate("c1", run_id="r1", target="shop", estimate=estimate)
    assert store.learning_rows() == []  # not settled yet: nothing measured
    effect = {"metric": "p50_ms", "endpoint": "orders", "ratio": 0.01, "ci95": [0.003, 0.032], "windows_measured": 3}
    store.settle_estimate("c1", "kept", effect)
    (row,) = store.learning_rows()
    assert (row["change_kind"], row["basis"], row["agent"], row["location"]) == (
        "create_index", "missing_index", "database", "orders.customer_id")
    assert (row["expected_gain"], row["whatif_ratio"], row["cost_before"], row["cost_after"], row["share"]) == (
        0.999, 1229.0, 52.5, 0.04, 0.8)
    assert row["evidence"] == {"plan": "SCAN orders"} and row["estimated_gain"]["ratio"] == 1229.0
    assert (row["outcome"], row["metric"], row["measured_endpoint"], row["windows"]) == ("kept", "p50_ms", "orders", 3)
    assert (row["measured_ratio"], row["measured_lo"], row["measured_hi"]) == (0.01, 0.003, 0.032)
    fit = fit_history(store).kinds["create_index/missing_index"]
    assert fit.n == 1 and 0 < fit.mean < 1  # x0.01 measured where x0.001 was promised


def test_the_search_trials_have_no_estimate_and_a_calibrated_kind_records_its_calibration() -> None:
    assert estimate_of(Candidate("set_config", {"config": {}}, "search"), []) is None
    knob = Candidate("set_knob", {"knob": "workers", "value": 2}, "w", expected_gain=0.5, basis="cpu_saturation")
    hot = Finding("application", "cpu_saturation", "target", "high", {"cpu": 97}, {"share_of_cpu": 0.5})
    from tasks.search.calibration import observation
    obs = observation("set_knob/cpu_saturation", "r0", 0.5, "p50_ms", 0.8, 0.7, 0.9)
    assert obs is not None
    estimate = estimate_of(knob, [hot], fit_calibration([obs]))
    assert estimate is not None
    assert (estimate["basis"], estimate["agent"], estimate["share"], estimate["whatif_ratio"]) == (
        "cpu_saturation", "application", 0.5, None)
    assert estimate["calibration"]["n"] == 1
    assert estimate["calibrated_gain"] == pytest.approx(1 - 0.5 ** estimate["calibration"]["share"], abs=1e-3)
