"""A quick-win run with `load.processes: 2`: the same decision as with one process, every window whole."""

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


@pytest.mark.e2e
def test_two_workers_keep_the_decisive_change_and_report_the_generator(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PERFAGENTS_MAX_FOREIGN_CORES", "2")  # a shared 2-core test machine: decisions, not timings
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec["start"]["cwd"] = str(MINI)
    spec["load"].update(duration_s=2, warmup_s=0.5, processes=2)
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    store, out = tmp_path / "store.duckdb", tmp_path / "out.json"
    proc = subprocess.run([str(PERFAGENTS), "run", str(path), "--store", str(store), "--json", str(out),
                           "--budget", "iterations=1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())

    (change,) = result["changes"]  # the cache knob skips 5 ms of a ~5 ms request: decisive either way
    assert change["params"] == {"knob": "cache", "value": True} and change["status"] == "kept", change
    generator = result["load_generator"]
    assert generator["processes"] == 2 and generator["cpu_max"] > 0
    con = duckdb.connect(str(store), read_only=True)
    try:
        reasons = [r[0] or "" for r in con.execute("SELECT reason FROM windows").fetchall()]
        roles = {r[0] for r in con.execute("SELECT DISTINCT role FROM resources").fetchall()}
    finally:
        con.close()
    assert reasons and not any("merged samples" in r for r in reasons)  # every window: merged == Locust's total
    assert {"loadgen-master", "loadgen-1", "loadgen-2"} <= roles
    assert generator["saturated_windows"] == sum("load generator saturated" in r for r in reasons)
