"""A regression planted with a real knob: the mini target's `cache` skips the 5 ms of work /fast
does. Four real short runs attach to it (real Locust, the real loop, agents off, two baseline
windows each): two with the cache on, then two with it off. `perfagents regressions` reports
/fast slower from the third run, confirmed, and exits 1; /items, which the cache does not touch,
is not reported (a clean history's exit 0: tests/tasks/results/test_regressions.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

MINI = Path(__file__).resolve().parent / "mini_target"
PERFAGENTS = Path(sys.executable).parent / "perfagents"
RUN_TIMEOUT_S = 120
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_prefect_api", "agents_off")]


@pytest.fixture
def mini(tmp_path: Path):
    """The mini target's app, started by the test (the runs attach to it)."""
    support = sys.modules["perfagents_prefect_support"]
    port = support.free_port()
    proc = support.start_process([sys.executable, str(MINI / "app.py"), str(port)], dict(os.environ),
                                 tmp_path / "app.log")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/fast", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("the mini target did not start")
        yield url
    finally:
        support.stop_process(proc)


def run_attached(spec: Path, store: Path, cwd: Path) -> None:
    # two 2.5 s windows (the baseline and one A/A window), then the load budget ends the run
    proc = subprocess.run([str(PERFAGENTS), "run", str(spec), "--store", str(store), "--budget", "load_s=6"],
                          cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]


def regressions(store: Path, out: Path) -> tuple[int, dict]:
    proc = subprocess.run([str(PERFAGENTS), "regressions", "--store", str(store), "--json", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return proc.returncode, json.loads(out.read_text())


def test_a_knob_that_slows_one_endpoint_is_a_confirmed_regression(mini: str, tmp_path: Path) -> None:
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec.pop("start")
    spec.pop("knobs")  # the test, not the optimizer, sets the cache: nothing to try, the run only measures
    spec["base_url"] = mini
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    store = tmp_path / "store.duckdb"
    t0 = time.monotonic()
    for cache in (True, True, False, False):
        httpx.put(mini + "/admin/config", json={"cache": cache}, timeout=5).raise_for_status()
        run_attached(path, store, tmp_path)
    print(f"4 runs: {time.monotonic() - t0:.1f} s")
    code, found = regressions(store, tmp_path / "found.json")
    assert code == 1, found
    fast = [r for r in found["regressions"] if r["endpoint"] == "fast" and r["status"] == "confirmed" and r["open"]]
    assert {r["metric"] for r in fast} >= {"p50_ms"}, found
    p50 = next(r for r in fast if r["metric"] == "p50_ms")
    assert p50["ci95"][0] > 1.5 and p50["runs_after"] == 2  # 5 ms of work on a sub-millisecond endpoint
    assert not [r for r in found["regressions"] if r["endpoint"] == "item" and r["status"] == "confirmed"]
