"""The application agent against a real Starlette app under uvicorn, loaded by a real Locust window."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from pydantic import Field

from tasks.agents.application.agent import ApplicationAgent
from tasks.agents.application.pyspy import PYSPY_ENV, find_pyspy
from tasks.agents.base import Agent, AgentContext
from tasks.findings import Finding
from tasks.load.runner import run_load_test
from tasks.resources import process_tree
from tasks.spec import ComplexityProbe, TargetSpec

APP_DIR = Path(__file__).with_name("application_app")
READY_TIMEOUT_S = 30
needs_pyspy = pytest.mark.skipif(find_pyspy() is None, reason="py-spy is not installed")
KNOBS = {"workers": {"type": "int", "low": 1, "high": 4, "default": 1, "apply": {"env": "SHOP_WORKERS"}},
         "gzip": {"type": "bool", "default": False, "apply": {"env": "SHOP_GZIP"}}}


class SpecWithProbes(TargetSpec):
    """TargetSpec plus the ``complexity`` field the lead adds to tasks/spec.py."""

    complexity: list[ComplexityProbe] = Field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(command: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    templated = any("{port}" in c for c in command)
    proc = subprocess.Popen([c.replace("{port}", str(port)) for c in command] if templated else [*command, str(port)],
                            cwd=APP_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_app(proc)
            raise RuntimeError("app did not become ready")
        time.sleep(0.1)


def stop_app(proc: subprocess.Popen[bytes]) -> None:
    for child in reversed(process_tree(proc.pid)[1:]):
        try:
            os.kill(child, 15)
        except ProcessLookupError:
            pass
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, url = start_app([sys.executable, "slowshop.py"])
    try:
        yield proc, url
    finally:
        stop_app(proc)


def make_spec(url: str, endpoints: list[dict[str, Any]], *, users: int, duration_s: float,
              complexity: list[dict[str, Any]] | None = None) -> SpecWithProbes:
    return SpecWithProbes(name="slowshop", base_url=url, spec_dir=APP_DIR, knobs=KNOBS,
                          load={"endpoints": endpoints, "users": users, "spawn_rate": 50,
                                "duration_s": duration_s, "warmup_s": 1},
                          complexity=complexity or [])


def run_window(agent: ApplicationAgent, spec: TargetSpec, url: str, pid: int, workdir: Path
               ) -> tuple[dict[str, Any], list[Finding]]:
    """profile() in a thread while a real Locust window runs, then findings() — as tasks/window.py does."""
    ctx = AgentContext(spec=spec, base_url=url, workdir=workdir, window_s=spec.load.duration_s + spec.load.warmup_s,
                       pids=lambda: process_tree(pid), config=spec.default_config())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["observed"] = agent.profile(ctx)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    try:
        result = run_load_test(spec, url, workdir / "load")
    finally:
        ctx.stop.set()
        worker.join(ctx.window_s + 30)
    assert not worker.is_alive(), "profile() overran its bound"
    if "error" in box:
        raise box["error"]
    observed = box["observed"]
    found = agent.findings(ctx, observed, result.samples)
    json.dumps(observed)  # the window stores it as JSON
    json.dumps([f.to_dict() for f in found])
    return observed, found


def by_kind(found: list[Finding], kind: str) -> list[Finding]:
    return [f for f in found if f.kind == kind]


def test_agent_contract() -> None:
    agent = ApplicationAgent()
    assert isinstance(agent, Agent)
    assert (agent.name, agent.layer) == ("application", "application")
    spec = make_spec("http://127.0.0.1:1", [{"name": "/", "path": "/"}], users=1, duration_s=1)
    assert agent.applies_to(spec)


@needs_pyspy
@pytest.mark.timeout(90)
def test_a_short_window_still_gets_a_wall_clock_burst() -> None:
    agent = ApplicationAgent(burst_s=2, gap_s=3.0)
    now = time.monotonic()
    # 4 s of load left after the first burst: a full gap would leave < 2 s for the wall-clock burst
    assert agent._gap(1, now + 4.0) == pytest.approx(1.5, abs=0.05)
    assert agent._gap(1, now + 2.0) == 1.0  # never below a control period
    assert agent._gap(1, now + 30.0) == 3.0  # a long window keeps the full gap
    assert agent._gap(2, now + 4.0) == 3.0 and agent._gap(1, None) == 3.0


@pytest.mark.alone  # its assertions rest on py-spy samples of the target
def test_mixed_window_finds_hot_code_blocking_loop_payload_leak_and_complexity(app, tmp_path: Path) -> None:
    proc, url = app
    # /cpu at 3x its default rounds (~12 ms of crunch_numbers a request): at the default, /blocking's
    # 20 ms sleeps held the loop most of the window, the CPU bursts caught 16 samples in all, 4 of
    # them in crunch_numbers (5 make a finding): 3 failures in 8 runs, beside other workers and alone
    spec = make_spec(url, [
        {"name": "/cpu", "path": "/cpu?rounds=120000", "weight": 2},
        {"name": "/blocking", "path": "/blocking", "weight": 2},
        {"name": "/big", "path": "/big", "weight": 1},
        {"name": "/leak", "path": "/leak", "weight": 1},
    ], users=6, duration_s=12, complexity=[  # 8 s once gave py-spy too few samples of /cpu
        {"name": "quadratic", "path": "/quadratic?n={n}", "sizes": [100, 300, 1000, 2000], "repeats": 5},
        {"name": "constant", "path": "/constant?n={n}", "sizes": [100, 300, 1000, 2000], "repeats": 5},
    ])
    observed, found = run_window(ApplicationAgent(gap_s=1.0), spec, url, proc.pid, tmp_path)
    assert observed["errors"] == []

    hot = {f.location: f for f in by_kind(found, "hot_function")}
    assert "slowshop:crunch_numbers" in hot, sorted(hot)
    assert 0 < hot["slowshop:crunch_numbers"].estimated_gain["share_of_cpu"] <= 1
    assert not any(loc.startswith(("uvicorn", "starlette")) or "<module>" in loc for loc in hot)

    blocking = by_kind(found, "blocking_call")
    assert [f.location for f in blocking][:1] == ["slowshop:sleepy_handler"]
    assert blocking[0].evidence["in_async_def"] is True
    assert "time.sleep" in blocking[0].evidence["source"]
    assert "slowshop:crunch_numbers" not in [f.location for f in blocking]

    complexity = {f.endpoint: f for f in by_kind(found, "superlinear_complexity")}
    assert set(complexity) == {"quadratic"}
    assert 1.5 <= complexity["quadratic"].evidence["exponent"] <= 2.5
    assert complexity["quadratic"].evidence["class"] == "O(n^2)"
    constant = next(r for r in observed["complexity"] if r["name"] == "constant")
    assert constant["fit"]["class"] == "O(1)"

    large = by_kind(found, "large_payload")
    assert [f.location for f in large] == ["/big"]
    uncompressed = by_kind(found, "uncompressed_response")
    assert [f.location for f in uncompressed] == ["/big"]
    assert uncompressed[0].evidence["gzip_bytes"] < uncompressed[0].evidence["body_bytes"] / 2
    assert uncompressed[0].candidate is not None
    assert uncompressed[0].candidate.params == {"knob": "gzip", "value": True}

    growth = by_kind(found, "memory_growth")
    assert growth and growth[0].evidence["slope_mb_per_min"] > 0

    overhead = observed["profiler_overhead"]
    assert overhead["rate_hz"] == 20 and overhead["bursts"] >= 2
    assert overhead["measured"] is True and overhead["rps_on"] > 0 and overhead["rps_off"] > 0


@needs_pyspy
@pytest.mark.alone  # saturation needs both cores: beside another xdist worker the tree got 78 % of 2 (CI)
@pytest.mark.timeout(60)
def test_saturating_window_finds_cpu_saturation_and_measures_overhead(app, tmp_path: Path) -> None:
    proc, url = app
    spec = make_spec(url, [{"name": "/cpu", "path": "/cpu?rounds=60000"}], users=4, duration_s=6)
    observed, found = run_window(ApplicationAgent(gap_s=1.0), spec, url, proc.pid, tmp_path)
    saturation = by_kind(found, "cpu_saturation")
    assert saturation, f"tree CPU {observed.get('cpu_pct_mean')}% of {observed.get('cores')} cores"
    assert saturation[0].evidence["usable_cores"] == 1
    assert saturation[0].candidate is not None
    assert saturation[0].candidate.params == {"knob": "workers", "value": 2}
    assert "slowshop:crunch_numbers" in [f.location for f in by_kind(found, "hot_function")]
    overhead = observed["profiler_overhead"]
    assert overhead["measured"] is True
    assert overhead["throughput_loss"] is not None and overhead["pyspy_cpu_s"] > 0
    print(f"\npy-spy overhead at {overhead['rate_hz']} Hz: {overhead}")


@needs_pyspy
@pytest.mark.timeout(60)
def test_gunicorn_workers_are_profiled_through_the_master(tmp_path: Path) -> None:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc, url = start_app([gunicorn, "slowshop:app", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
                           "-b", "127.0.0.1:{port}", "--log-level", "warning"])
    try:
        spec = make_spec(url, [{"name": "/cpu", "path": "/cpu"}], users=1, duration_s=4)
        ctx = AgentContext(spec=spec, base_url=url, workdir=tmp_path, window_s=4, pids=lambda: process_tree(proc.pid))
        stop = threading.Event()

        def drive() -> None:
            with httpx.Client(base_url=url) as client:
                while not stop.is_set():
                    client.get("/cpu")

        drivers = [threading.Thread(target=drive, daemon=True) for _ in range(3)]
        for d in drivers:
            d.start()
        try:
            observed = ApplicationAgent(gap_s=0.5, wait_for_warmup=False).profile(ctx)
        finally:
            stop.set()
            for d in drivers:
                d.join(10)
        found = ApplicationAgent().findings(ctx, observed, pl.DataFrame())
    finally:
        stop_app(proc)
    assert observed["errors"] == []
    assert len(observed["resources"]["ts"]) >= 4 and max(observed["resources"]["pids"]) >= 3
    assert "slowshop:crunch_numbers" in [f.location for f in by_kind(found, "hot_function")]


@pytest.mark.timeout(30)
def test_missing_pyspy_is_a_recorded_error(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, url = app
    monkeypatch.setenv(PYSPY_ENV, str(tmp_path / "no-such-py-spy"))
    spec = make_spec(url, [{"name": "/cpu", "path": "/cpu"}], users=1, duration_s=1)
    ctx = AgentContext(spec=spec, base_url=url, workdir=tmp_path, window_s=1.5, pids=lambda: process_tree(proc.pid))
    agent = ApplicationAgent(wait_for_warmup=False)
    observed = agent.profile(ctx)
    assert [e["probe"] for e in observed["errors"]] == ["pyspy"]
    assert "py-spy not found" in observed["errors"][0]["error"]
    assert observed["bursts"] == [] and len(observed["resources"]["ts"]) >= 1
    assert agent.findings(ctx, observed, pl.DataFrame()) == []


@needs_pyspy
@pytest.mark.timeout(30)
def test_failing_pyspy_is_a_recorded_error(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])  # a real process py-spy cannot profile: not Python
    try:
        spec = make_spec("http://127.0.0.1:1", [{"name": "/", "path": "/"}], users=1, duration_s=1)
        ctx = AgentContext(spec=spec, base_url="http://127.0.0.1:1", workdir=tmp_path, window_s=1.5,
                           pids=lambda: process_tree(sleeper.pid))
        agent = ApplicationAgent(gap_s=0.2, wait_for_warmup=False)
        started = time.monotonic()
        observed = agent.profile(ctx)
        assert time.monotonic() - started < ctx.window_s + 10
        found = agent.findings(ctx, observed, pl.DataFrame())
    finally:
        sleeper.kill()
        sleeper.wait(5)
    errors = [e for e in observed["errors"] if e["probe"] == "pyspy"]
    assert len(errors) == 1 and "No python processes found" in errors[0]["error"]
    assert len(observed["bursts"]) == 2 and all(b["exit_code"] != 0 for b in observed["bursts"])
    assert found == []
