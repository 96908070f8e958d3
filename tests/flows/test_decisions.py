"""Decisions on a real target: a harmful change is reverted with its reason; a budget ends a run cleanly."""

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


def run_mini(tmp_path: Path, *args: str, knobs: dict | None = None, **overrides) -> tuple[dict, Path]:
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec["start"]["cwd"] = str(MINI)
    spec["load"].update(duration_s=2, warmup_s=0.5)  # 2.5 s windows: these decisions need no more
    if knobs is not None:
        spec["knobs"] = knobs
    spec.update(overrides)
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    store, out = tmp_path / "store.duckdb", tmp_path / "out.json"
    proc = subprocess.run([str(PERFAGENTS), "run", str(path), "--store", str(store), "--json", str(out), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), store


@pytest.mark.smoke  # the loop through the CLI on a real target, in the default `make test`
@pytest.mark.e2e
def test_a_knob_that_raises_errors_is_reverted_with_its_reason(tmp_path: Path) -> None:
    result, store = run_mini(tmp_path, "--budget", "iterations=1", knobs={"flaky": FLAKY})
    (change,) = result["changes"]
    assert change["status"] == "reverted"
    assert "error_rate" in change["reason"] and "quality threshold broken" in change["reason"]
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute("SELECT status, reason FROM changes").fetchall()
    finally:
        con.close()
    assert rows == [("reverted", change["reason"])]
    assert result["config"] == {"flaky": False}
    # what was estimated (a knob no finding points at: the prior) and how it ended, for the next ranking
    con = duckdb.connect(str(store), read_only=True)
    try:
        learned = con.execute("SELECT change_kind, basis, expected_gain, outcome FROM change_estimates").fetchall()
    finally:
        con.close()
    assert learned == [("set_knob", "", 0.1, "reverted")]
    assert [k["kind"] for k in result["learning"]["kinds"]] == ["set_knob/no_finding"]


@pytest.mark.e2e
def test_budget_below_need_ends_cleanly_with_a_correct_ledger(tmp_path: Path) -> None:
    result, store = run_mini(tmp_path, "--budget", "load_s=6", "--goals", "p95_ms<=0.001",
                             knobs={"cache": yaml.safe_load((MINI / "target.yaml").read_text())["knobs"]["cache"], "flaky": FLAKY})
    assert result["status"] == "budget_exhausted"
    assert "load_s" in result["stop_reason"]
    assert result["changes"] == []  # the next change would not fit: nothing half-done
    assert 4 <= result["costs"]["load_s"] <= 6  # two 2.5 s windows; a third would not fit
    con = duckdb.connect(str(store), read_only=True)
    try:
        ledger = dict(con.execute("SELECT kind, amount FROM costs").fetchall())
        windows = con.execute("SELECT count(*) FROM windows").fetchall()[0][0]
    finally:
        con.close()
    assert ledger["load"] == pytest.approx(result["costs"]["load_s"])
    assert ledger["cpu"] > 0 and ledger["wall"] >= ledger["load"]
    assert windows == 2


@pytest.mark.e2e
def test_a_cache_that_serves_stale_data_is_reverted(tmp_path: Path) -> None:
    result, _ = run_mini(
        tmp_path, "--budget", "iterations=1",
        quality_metrics=["error_rate<=0.01", "responses==baseline"],
        correctness={"probes": [{"write": {"method": "POST", "path": "/counter"}, "read": "/counter"}]},
    )
    (change,) = result["changes"]
    assert change["params"] == {"knob": "cache", "value": True}
    assert change["status"] == "reverted"
    assert "responses==baseline" in change["reason"] and "stale" in change["reason"]
    assert result["config"] == {"cache": False}
