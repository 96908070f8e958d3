"""Two studies of two small targets at once, through the `parallel` deployment and one process worker.

A real `prefect server` (the session's), `prefect deploy` of optimize-target/parallel, and a real
`prefect worker start --limit 2`: both flow runs overlap in time, each on a CPU of its own
(PERFAGENTS_STUDY_CPUS=1: this host has 2), both complete with their own target's result, and
`perfagents history` lists each run. Each study writes its own store: DuckDB lets one process
write a file, and a store that concurrent runs share is another branch's work.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "flows" / "mini_target"
PREFECT = Path(sys.executable).with_name("prefect")
PERFAGENTS = Path(sys.executable).with_name("perfagents")
POOL = "perfagents-process"
CLI_TIMEOUT_S = 60
RUN_TIMEOUT_S = 200
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
UUID = re.compile(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")

support = sys.modules["perfagents_prefect_support"]  # loaded by conftest.py


def run_cli(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PREFECT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


def write_target(folder: Path, name: str) -> Path:
    """The mini target under another name: one live knob (cache) that removes 5 ms of work."""
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec["name"] = name
    spec["start"]["cwd"] = str(MINI)
    spec["budget_constraints"] = {"minutes": 3, "iterations": 1}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def flow_run(api_url: str, run_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=10)
    resp.raise_for_status()
    return resp.json()


def wait_all(api_url: str, run_ids: list[str], worker: subprocess.Popen[bytes], log: Path) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    runs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"worker exited with {worker.returncode}:\n{support.tail(log)}")
        runs = {rid: flow_run(api_url, rid) for rid in run_ids}
        if all((r.get("state") or {}).get("type") in TERMINAL_STATES for r in runs.values()):
            return runs
        time.sleep(1)
    pytest.fail(f"flow runs not finished after {RUN_TIMEOUT_S} s: "
                f"{ {rid: (r.get('state') or {}).get('type') for rid, r in runs.items()} }\n{support.tail(log)}")


@pytest.mark.deploy
@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_two_studies_run_at_once_on_their_own_cpus(prefect_server, tmp_path: Path) -> None:
    env = prefect_server.child_env(tmp_path / "home")
    pool = run_cli(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = run_cli(["--no-prompt", "deploy", "--name", "optimize-target/parallel"], env)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    studies = {name: write_target(tmp_path, name) for name in ("mini-a", "mini-b")}
    job_env = {"PERFAGENTS_STUDY_CPUS": "1", "PERFAGENTS_STUDY_SLOTS_DIR": str(tmp_path / "slots"),
               "PERFAGENTS_AGENTS": "none",  # plumbing and decisions, not 13 s profiling windows
               "PERFAGENTS_MAX_FOREIGN_CORES": "2"}  # other work on this shared 2-core machine
    worker_log = tmp_path / "worker.log"
    worker = support.start_process([str(PREFECT), "worker", "start", "--pool", POOL, "--limit", "2"], env, worker_log)
    run_ids: dict[str, str] = {}
    try:
        for name, spec in studies.items():
            request = {"target": str(spec), "optimization_scope": "quick-win", "store": str(tmp_path / "shared.duckdb"),
                       "json_path": str(tmp_path / f"{name}.json")}
            started = run_cli(["deployment", "run", "optimize-target/parallel", "--param", f"request={json.dumps(request)}",
                               "--job-variable", f"env={json.dumps(job_env)}"], env, cwd=tmp_path)
            assert started.returncode == 0, started.stdout + started.stderr
            match = UUID.search(started.stdout)
            assert match, started.stdout
            run_ids[name] = match.group(1)
        runs = wait_all(prefect_server.api_url, list(run_ids.values()), worker, worker_log)
    finally:
        support.stop_process(worker)

    for name, rid in run_ids.items():
        assert runs[rid]["state"]["type"] == "COMPLETED", f"{name}: {runs[rid]['state']}\n{support.tail(worker_log)}"
    a, b = (runs[run_ids[n]] for n in studies)
    assert a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"], "the two studies did not overlap"

    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in studies}
    cpus = [set(r["study_cpus"]) for r in results.values()]
    assert all(len(c) == 1 for c in cpus) and cpus[0].isdisjoint(cpus[1]), cpus
    for name, result in results.items():
        assert result["target"] == name
        assert result["status"] in {"goals_met", "budget_exhausted", "no_candidates"}, result["status"]
        assert result["load_generator"]["processes"] == 1
        (change,) = result["changes"]  # the cache knob skips 5 ms of a ~5 ms request: decisive
        assert change["params"] == {"knob": "cache", "value": True}
        assert change["status"] == "kept", change
    # one store shared by both studies while they ran (tasks/store: held per read or transaction)
    history = subprocess.run([str(PERFAGENTS), "history", "--json", "--store", str(tmp_path / "shared.duckdb")],
                             capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert sorted((r["run_id"], r["target"], r["status"]) for r in rows) == sorted(
        (r["run_id"], name, r["status"]) for name, r in results.items())
    assert all(r["kept"] == 1 for r in rows)
