"""A window on a real target: agents run beside the load; one that fails or overruns is recorded, never fatal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from tasks import window as window_mod
from tasks.agents.base import AgentContext
from tasks.budget import Budget, Ledger
from tasks.changes.runtime import Runtime
from tasks.spec import load_spec
from tasks.target import start_target, stop_target

MINI = Path(__file__).resolve().parents[1] / "flows" / "mini_target"


class CrashingAgent:
    name, layer = "crashing", "application"

    def applies_to(self, spec: Any) -> bool:
        return True

    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        raise RuntimeError("profiler exploded")

    def findings(self, ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> list:
        return []


class StuckAgent(CrashingAgent):
    name = "stuck"

    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        time.sleep(30)
        return {}


class CountingAgent(CrashingAgent):
    name = "counting"

    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        ctx.stop.wait(60)
        return {"saw_stop": ctx.stop.is_set()}


@pytest.fixture
def mini(tmp_path: Path):
    spec_data = yaml.safe_load((MINI / "target.yaml").read_text())
    spec_data["start"]["cwd"] = str(MINI)
    spec_data["load"].update(duration_s=3, warmup_s=1, users=2)
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec_data))
    spec = load_spec(path)
    handle = start_target(spec, tmp_path, spec.default_config())
    try:
        yield Runtime(spec, tmp_path, handle, spec.default_config())
    finally:
        stop_target(handle)


def test_failing_and_stuck_agents_are_recorded_and_the_window_completes(store, mini, monkeypatch) -> None:
    monkeypatch.setattr(window_mod, "AGENT_GRACE_S", 3.0)
    started = time.monotonic()
    w = window_mod.measure_window(store, "run-1", mini, "baseline-1",
                                  agents=[CrashingAgent(), StuckAgent(), CountingAgent()],
                                  ledger=Ledger(Budget()), max_attempts=1)
    assert time.monotonic() - started < 25  # the stuck agent did not hold the window
    assert w.samples.height > 0 and w.stats["total"]["requests"] == w.samples.height
    outcomes = {a.agent: a for a in w.agents}
    assert outcomes["crashing"].status == "failed" and "profiler exploded" in outcomes["crashing"].error
    assert outcomes["stuck"].status == "timeout"
    assert outcomes["counting"].status == "ok" and outcomes["counting"].observed == {"saw_stop": True}
    rows = {r["agent"]: r["status"] for r in store.rows("SELECT agent, status FROM agent_runs")}
    assert rows == {"crashing": "failed", "stuck": "timeout", "counting": "ok"}
    assert store.rows("SELECT count(*) AS n FROM samples")[0]["n"] == w.samples.height
    (live,) = store.live_windows("run-1")  # the window's progress, shown while it ran (tasks/live.py)
    assert live["done"] and live["label"] == "baseline-1" and live["requests"] >= w.samples.height
    # the abandoned agent still sleeps, on a daemon thread: it cannot hold the process open at exit
    import threading

    stuck = [t for t in threading.enumerate() if t.name == "agent-stuck"]
    assert stuck and all(t.daemon for t in stuck)


@pytest.fixture
def mini_two_workers(tmp_path: Path):
    spec_data = yaml.safe_load((MINI / "target.yaml").read_text())
    spec_data["start"]["cwd"] = str(MINI)
    spec_data["load"].update(duration_s=3, warmup_s=1, users=4, processes=2)
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec_data))
    spec = load_spec(path)
    handle = start_target(spec, tmp_path, spec.default_config())
    try:
        yield Runtime(spec, tmp_path, handle, spec.default_config())
    finally:
        stop_target(handle)


def test_a_window_of_two_workers_is_one_window_stored_once(store, mini_two_workers) -> None:
    """load.processes: 2 through the run's code path: the merged samples are the window, the gate
    judged the busiest worker, and the run's load generator summary counts it."""
    rt = mini_two_workers
    w = window_mod.measure_window(store, "run-1", rt, "baseline-1", agents=[], ledger=Ledger(Budget()),
                                  max_attempts=1)
    assert w.samples.height >= 200 and w.stats["total"]["requests"] == w.samples.height
    assert not any("merged samples" in r for r in w.reasons)
    assert store.rows("SELECT count(*) AS n FROM samples")[0]["n"] == w.samples.height
    roles = {r["role"] for r in store.rows("SELECT DISTINCT role FROM resources")}
    assert {"loadgen-master", "loadgen-1", "loadgen-2", "target"} <= roles
    summary = rt.load_generator.summary()
    assert summary["processes"] == 2 and summary["cpu_max"] == pytest.approx(w.loadgen_cpu_pct, abs=0.1)
    assert summary["saturated_windows"] == (0 if w.valid else int("loadgen_not_saturated" in w.failed_rules))


def test_auto_runs_the_next_window_with_one_more_worker(store, tmp_path: Path, monkeypatch) -> None:
    """load.processes: auto through the run's code path: a hot window (threshold lowered to 0 here, so
    the test does not depend on how busy the machine is) makes the next one a master and 2 workers."""
    import tasks.load.generator as generator_mod

    monkeypatch.setattr(generator_mod, "AUTO_SCALE_CPU_PCT", 0.0)
    spec_data = yaml.safe_load((MINI / "target.yaml").read_text())
    spec_data["start"]["cwd"] = str(MINI)
    spec_data["load"].update(duration_s=2, warmup_s=0.5, users=2, processes="auto")
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec_data))
    spec = load_spec(path)
    handle = start_target(spec, tmp_path, spec.default_config())
    try:
        rt = Runtime(spec, tmp_path, handle, spec.default_config())
        rt.load_generator.max_processes = 2
        assert rt.load_generator.processes == 1
        first = window_mod.measure_window(store, "run-1", rt, "w1", agents=[], ledger=Ledger(Budget()), max_attempts=1)
        assert rt.load_generator.processes == 2  # grown between windows, never inside one
        second = window_mod.measure_window(store, "run-1", rt, "w2", agents=[], ledger=Ledger(Budget()), max_attempts=1)
        assert rt.load_generator.processes == 2  # at its ceiling
    finally:
        stop_target(handle)
    with store.session() as con:
        roles = dict(con.execute(
            "SELECT window_id, list(DISTINCT role ORDER BY role) FROM resources GROUP BY window_id").fetchall())
    assert roles[first.window_id] == ["loadgen", "target"]
    assert roles[second.window_id] == ["loadgen-1", "loadgen-2", "loadgen-master", "target"]
    assert rt.load_generator.summary()["processes"] == 2 and rt.load_generator.grown_at == [1]
