"""The report shows, per kind of estimate, what was estimated against what was measured."""

from __future__ import annotations

import pytest

from tasks.results.learning import learning_section
from tasks.results.report import render_html, render_markdown
from tasks.store import Store


def _tried(store: Store, change_id: str, run_id: str, kind: str, basis: str, gain: float, outcome: str,
           ratio: float | None, ci: tuple[float, float] | None) -> None:
    store.insert_estimate(change_id, run_id=run_id, target="shop",
                          estimate={"change_kind": kind, "basis": basis, "expected_gain": gain})
    effect = {"metric": "p50_ms", "ratio": ratio, "ci95": list(ci)} if ratio is not None and ci else None
    store.settle_estimate(change_id, outcome, effect)


def test_the_report_rows_put_estimated_against_measured_per_kind(store: Store) -> None:
    for run_id in ("r1", "r2"):
        store.insert_run(run_id, target="shop", scope="quick-win", flow="t", spec={}, goals=[], quality=[], budget={},
                         code_version=None)
    _tried(store, "c1", "r1", "create_index", "missing_index", 0.99, "kept", 0.1, (0.08, 0.125))
    _tried(store, "c2", "r2", "create_index", "missing_index", 0.99, "kept", 0.1, (0.08, 0.125))
    _tried(store, "c3", "r1", "set_knob", "", 0.1, "reverted", 0.98, (0.9, 1.07))
    _tried(store, "c4", "r2", "set_knob", "", 0.1, "reverted", None, None)  # quality broke: nothing measured
    section = learning_section(store)
    assert (section["changes"], section["observations"]) == (4, 3)
    index, knob = section["kinds"]
    assert (index["kind"], index["tried"], index["kept"], index["measured"]) == ("create_index/missing_index", 2, 2, 2)
    assert index["estimated_ratio"] == pytest.approx(0.01) and index["measured_ratio"] == pytest.approx(0.1)
    assert 0.4 < index["share"] < 0.6 and index["share_ci95"][0] < index["share"] < index["share_ci95"][1]
    assert (knob["kind"], knob["tried"], knob["reverted"], knob["measured"]) == ("set_knob/no_finding", 2, 2, 1)
    result = {"run_id": "r2", "target": "shop", "status": "goals_met", "stop_reason": None,
              "noise_floor": {"p95_rel": 0.1}, "baseline": {"endpoints": {}, "total": {}},
              "final": {"endpoints": {}, "total": {}}, "changes": [], "findings": [], "goals": [],
              "costs": {"wall_s": 1, "load_s": 1, "cpu_s": 1, "tokens": 0, "usd": 0}, "learning": section}
    text = render_markdown(result)
    assert "## Estimated against measured, per kind" in text
    row = next(line for line in text.splitlines() if line.startswith("| create_index/missing_index"))
    assert "| 2 | 2 | 0 | 2 | x0.01 | x0.1 | 0." in row
    page = render_html(result)
    assert "<td>create_index/missing_index</td><td>2</td><td>2</td><td>0</td><td>2</td><td>x0.01</td><td>x0.1</td>" in page
    assert "<td>set_knob/no_finding</td>" in page
    empty = {**result, "learning": {"kinds": []}}
    assert "Estimated against measured" not in render_markdown(empty) + render_html(empty)
