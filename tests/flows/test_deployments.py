"""prefect.yaml: the deployments parse, deploy to a real `prefect server`, and run through a process worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
MINI_SPEC = "tests/flows/mini_target/target.yaml"  # relative to the repo root, as a user types it
PREFECT = Path(sys.executable).with_name("prefect")
POOL = "perfagents-process"
NIGHTLY_CRON = "0 3 * * *"
SERVER_START_TIMEOUT_S = 90
CLI_TIMEOUT_S = 60
RUN_TIMEOUT_S = 150
STOP_TIMEOUT_S = 15
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
UUID = re.compile(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def load_deployments() -> list[dict[str, Any]]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


def find_deployment(entrypoint_flow: str, name: str) -> dict[str, Any]:
    found = [d for d in load_deployments()
             if d["name"] == name and d["entrypoint"].endswith(f":{entrypoint_flow}")]
    assert len(found) == 1, f"expected one {entrypoint_flow}/{name} deployment, found {len(found)}"
    return found[0]


# --- prefect.yaml itself (no server) ---------------------------------------------------------

def test_reference_workflow_runs_nightly_by_cron_and_on_demand() -> None:
    nightly = find_deployment("ecommerce_optimization", "nightly")
    assert nightly["entrypoint"] == "flows/ecommerce.py:ecommerce_optimization"
    assert nightly["schedules"] == [{"cron": NIGHTLY_CRON, "timezone": "UTC", "active": True}]
    on_demand = find_deployment("ecommerce_optimization", "on-demand")
    assert not on_demand.get("schedules")
    optimize = find_deployment("optimize_target", "on-demand")
    assert optimize["entrypoint"] == "flows/optimize.py:optimize_target"
    assert not optimize.get("schedules")


def test_every_deployment_uses_the_process_pool_and_enforces_its_form() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    for dep in config["deployments"]:
        assert dep["work_pool"]["name"] == POOL, dep["name"]
        assert dep["enforce_parameter_schema"] is True, dep["name"]
        assert (ROOT / dep["entrypoint"].split(":")[0]).is_file(), dep["entrypoint"]
    steps = [next(iter(step)) for step in config["pull"]]
    assert steps == ["prefect.deployments.steps.set_working_directory"]


def test_flow_signatures_give_a_typed_form() -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    for dep in load_deployments():
        flow = load_flow_from_entrypoint(str(ROOT / dep["entrypoint"]))
        props = parameter_schema(flow).model_dump()["properties"]
        assert set(dep.get("parameters") or {}) <= set(props), dep["name"]
        scope_types = props["optimization_scope"]["anyOf"]
        assert {"enum": ["quick-win", "comprehensive"], "type": "string"} in scope_types
        goal_types = props["performance_goals"]["anyOf"]
        assert {"items": {"type": "string"}, "type": "array"} in goal_types


# --- a real server, deploy, a process worker --------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(home: Path, api_url: str) -> dict[str, str]:
    """The environment for every prefect child: isolated home, this server, no prompts, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_CLI_COLORS": "false",
        "PREFECT_CLI_WRAP_LINES": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        # the nightly schedule is stored, but this test server must not start an e-commerce run
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    })
    return env


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it and every descendant (flow runs get their own group)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            break
        except subprocess.TimeoutExpired:
            continue
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=5)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PREFECT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


def wait_for_health(api_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with {proc.returncode}:\n{tail(log)}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy within {SERVER_START_TIMEOUT_S} s:\n{tail(log)}")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real `prefect server start` on loopback, the process pool, and `prefect deploy --all`."""
    tmp = tmp_path_factory.mktemp("prefect-deploy")
    api_url = f"http://127.0.0.1:{free_port()}/api"
    env = child_env(tmp / "home", api_url)
    timings: dict[str, float] = {}
    log = tmp / "server.log"
    t0 = time.monotonic()
    server = start_process([str(PREFECT), "server", "start", "--host", "127.0.0.1",
                            "--port", api_url.rsplit(":", 1)[1].split("/")[0]], env, log)
    try:
        wait_for_health(api_url, server, log)
        timings["server_start_s"] = time.monotonic() - t0
        pool = run_cli(["work-pool", "create", POOL, "--type", "process"], env)
        assert pool.returncode == 0, pool.stdout + pool.stderr
        t0 = time.monotonic()
        deploy = run_cli(["--no-prompt", "deploy", "--all"], env)
        timings["deploy_all_s"] = time.monotonic() - t0
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        yield {"api_url": api_url, "env": env, "tmp": tmp, "timings": timings, "server_log": log}
    finally:
        stop_process(server)
        print(f"deployment timings: {', '.join(f'{k}={v:.1f}' for k, v in timings.items())}")


def read_deployment(api_url: str, flow: str, name: str) -> dict[str, Any]:
    resp = httpx.get(f"{api_url}/deployments/name/{flow}/{name}", timeout=10)
    assert resp.status_code == 200, f"{flow}/{name}: {resp.status_code} {resp.text[:300]}"
    return resp.json()


@pytest.mark.deploy
@pytest.mark.timeout(240)
def test_deploy_all_registers_schedules_forms_and_the_checkout(deployed: dict[str, Any]) -> None:
    api_url = deployed["api_url"]
    nightly = read_deployment(api_url, "ecommerce-optimization", "nightly")
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == [NIGHTLY_CRON]
    assert nightly["schedules"][0]["schedule"]["timezone"] == "UTC"
    assert read_deployment(api_url, "ecommerce-optimization", "on-demand")["schedules"] == []

    optimize = read_deployment(api_url, "optimize-target", "on-demand")
    assert optimize["work_pool_name"] == POOL
    assert optimize["enforce_parameter_schema"] is True
    assert optimize["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    props = optimize["parameter_openapi_schema"]["properties"]
    assert {"enum": ["quick-win", "comprehensive"], "type": "string"} in props["optimization_scope"]["anyOf"]
    assert {"items": {"type": "string"}, "type": "array"} in props["quality_metrics"]["anyOf"]
    assert props["allow_remote"]["type"] == "boolean"
    assert props["target"]["type"] == "string"


@pytest.mark.deploy
@pytest.mark.timeout(240)
def test_an_unknown_scope_is_refused_before_a_run_exists(deployed: dict[str, Any]) -> None:
    bad = run_cli(["deployment", "run", "optimize-target/on-demand",
                   "--param", f"target={MINI_SPEC}", "--param", "optimization_scope=fastest"],
                  deployed["env"])
    assert bad.returncode != 0, bad.stdout
    assert "fastest" in bad.stdout + bad.stderr
    runs = httpx.post(f"{deployed['api_url']}/flow_runs/filter",
                      json={"flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING"]}}}},
                      timeout=10)
    assert [r for r in runs.json() if r["parameters"].get("optimization_scope") == "fastest"] == []


@pytest.mark.deploy
@pytest.mark.timeout(240)
def test_optimize_target_runs_to_completion_through_a_process_worker(deployed: dict[str, Any]) -> None:
    api_url, env, tmp, timings = deployed["api_url"], deployed["env"], deployed["tmp"], deployed["timings"]
    store, result = tmp / "store.duckdb", tmp / "result.json"
    worker_log = tmp / "worker.log"
    worker = start_process([str(PREFECT), "worker", "start", "--pool", POOL, "--limit", "1"], env, worker_log)
    try:
        t0 = time.monotonic()
        # run from another folder: the deployment's pull step must bring the run to the checkout
        started = subprocess.run(
            [str(PREFECT), "deployment", "run", "optimize-target/on-demand",
             "--param", f"target={MINI_SPEC}", "--param", "optimization_scope=quick-win",
             "--param", f"store={store}", "--param", f"json_path={result}"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
        assert started.returncode == 0, started.stdout + started.stderr
        match = UUID.search(started.stdout)
        assert match, started.stdout
        state = wait_for_terminal_state(api_url, match.group(1), worker, worker_log)
        timings["flow_run_s"] = time.monotonic() - t0
        assert state == "COMPLETED", f"flow run ended {state}:\n{tail(worker_log)}"
    finally:
        stop_process(worker)

    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.sql("SELECT flow, target, scope, status FROM runs").fetchall()
    assert len(rows) == 1
    flow, target, scope, status = rows[0]
    assert (flow, target, scope) == ("optimize-target", "mini", "quick-win")
    assert status in {"goals_met", "budget_exhausted", "no_candidates"}, status
    assert result.is_file()


def wait_for_terminal_state(api_url: str, run_id: str, worker: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"worker exited with {worker.returncode}:\n{tail(log)}")
        resp = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=10)
        resp.raise_for_status()
        state = (resp.json().get("state") or {}).get("type", "UNKNOWN")
        if state in TERMINAL_STATES:
            return state
        time.sleep(1)
    pytest.fail(f"flow run {run_id} still {state} after {RUN_TIMEOUT_S} s:\n{tail(log)}")
