"""The comprehensive scope on a real target: the search, its Pareto front and chosen point, and
memoization across runs (a second run reuses the search windows of earlier runs of the same
target and code version and measures again only the chosen point; --remeasure reuses none)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

MINI = Path(__file__).resolve().parent / "mini_target"
PERFAGENTS = Path(sys.executable).parent / "perfagents"
pytestmark = pytest.mark.usefixtures("shared_prefect_api", "agents_off")  # tests/flows/conftest.py
FLAKY = {"type": "bool", "default": False, "description": "skip work, fail every 5th /items",
         "apply": {"http": {"method": "PUT", "path": "/admin/config", "field": "flaky"}}}
BEST = {"cache": True, "flaky": False}  # flaky breaks error_rate; the cache is quicker


def write_spec(tmp_path: Path) -> Path:
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec["start"]["cwd"] = str(MINI)
    spec["knobs"] = {"cache": spec["knobs"]["cache"], "flaky": FLAKY}
    spec["load"].update(duration_s=2, warmup_s=0.5)  # 2 s windows: the throughput floor bins them finer
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_comprehensive(tmp_path: Path, spec: Path, *args: str, iterations: int = 4) -> dict:
    out = tmp_path / "out.json"
    proc = subprocess.run([str(PERFAGENTS), "run", str(spec), "--store", str(tmp_path / "store.duckdb"),
                           "--json", str(out), "--scope", "comprehensive", "--budget", f"iterations={iterations}",
                           *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def knob_changes(store: Path, run_id: str) -> set[str]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT status FROM changes WHERE kind = 'set_config' AND run_id = ?",
                                          [run_id]).fetchall()}
    finally:
        con.close()


def search_windows(store: Path, run_id: str) -> list[dict]:
    """The configurations this run measured in search windows (valid, or rejected only for errors)."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute("SELECT DISTINCT config FROM windows WHERE run_id = ? AND label LIKE 'search-%' "
                           "AND (valid OR reason LIKE 'error_rate%')", [run_id]).fetchall()
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


@pytest.mark.e2e
def test_a_second_run_reuses_measured_configurations_and_remeasure_reuses_none(tmp_path: Path) -> None:
    spec, store = write_spec(tmp_path), tmp_path / "store.duckdb"
    first = run_comprehensive(tmp_path, spec)
    measured_first = search_windows(store, first["run_id"])
    assert first["search_history"]["reused"] == 0 and measured_first
    assert first["scope"] == "comprehensive" and first["config"] == BEST
    chosen = [p for p in first["pareto"] if p["chosen"]]
    assert [p["config"] for p in chosen] == [BEST] and set(chosen[0]["objectives"]) == {"p95_ms", "usd_per_hour"}
    assert 1 <= len(measured_first) <= 3  # the space has 3 configurations besides the kept one
    assert knob_changes(store, first["run_id"]) == {"reverted", "kept"}  # trials reverted, the choice kept
    assert {tuple(sorted(p["config"].items())) for p in first["search_points"]} >= {tuple(sorted(BEST.items()))}

    second = run_comprehensive(tmp_path, spec)
    history = second["search_history"]
    assert history["code_version"] == first["search_history"]["code_version"], "a commit landed between the runs"
    assert history["reused"] == len(measured_first)
    assert history["label_prefix"] == first["search_history"]["label_prefix"]
    measured_second = search_windows(store, second["run_id"])
    # nothing measured in the first run is measured again, except the chosen point, once, for the decision
    again = [c for c in measured_second if c in measured_first]
    assert again == ([history["confirmed"]] if history["confirmed"] else [])
    assert len(measured_second) < len(measured_first) or len(measured_first) < 3
    assert second["config"] == BEST
    assert [p["config"] for p in second["pareto"] if p["chosen"]] == [BEST]

    third = run_comprehensive(tmp_path, spec, "--remeasure", iterations=1)  # one window shows it
    assert third["search_history"]["reused"] == 0 and third["search_history"]["remeasure"] is True
    assert any(c in measured_first for c in search_windows(store, third["run_id"]))
