"""prefect.yaml: the deployments parse, deploy to a real `prefect server`, and run through a process worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
MINI_SPEC = "tests/flows/mini_target/target.yaml"  # relative to the repo root, as a user types it
PREFECT = Path(sys.executable).with_name("prefect")
POOL = "perfagents-process"
NIGHTLY_CRON = "0 3 * * *"
REGRESSIONS_CRON = "30 4 * * *"  # after the nightly optimization run
CLI_TIMEOUT_S = 60
RUN_TIMEOUT_S = 150
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
UUID = re.compile(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")

support = sys.modules["perfagents_prefect_support"]  # loaded by conftest.py
start_process, stop_process, tail = support.start_process, support.stop_process, support.tail


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
    check = find_deployment("check_regressions", "nightly")
    assert check["entrypoint"] == "flows/regressions.py:check_regressions"
    assert check["schedules"] == [{"cron": REGRESSIONS_CRON, "timezone": "UTC", "active": True}]


def test_every_deployment_uses_the_process_pool_and_enforces_its_form() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    for dep in config["deployments"]:
        assert dep["work_pool"]["name"] == POOL, dep["name"]
        assert dep["enforce_parameter_schema"] is True, dep["name"]
        assert (ROOT / dep["entrypoint"].split(":")[0]).is_file(), dep["entrypoint"]
    steps = [next(iter(step)) for step in config["pull"]]
    assert steps == ["prefect.deployments.steps.set_working_directory"]


FLOW_TARGETS = {"ecommerce_optimization": "ecommerce", "optimize_target": "ecommerce",
                "enterprise_api_optimization": "enterprise-api"}


def assert_one_request_form(schema: dict[str, Any]) -> dict[str, Any]:
    """The flow's form is one parameter, `request`, typed by the RunRequest model; returns its fields."""
    assert set(schema["properties"]) == {"request"}
    assert schema["properties"]["request"]["$ref"] == "#/definitions/RunRequest"
    model = schema["definitions"]["RunRequest"]
    assert model["additionalProperties"] is False
    fields = model["properties"]
    assert {"enum": ["quick-win", "comprehensive"], "type": "string"} in fields["optimization_scope"]["anyOf"]
    for listed in ("performance_goals", "quality_metrics"):
        assert {"items": {"type": "string"}, "type": "array"} in fields[listed]["anyOf"]
    for flag in ("allow_remote", "remeasure"):
        assert fields[flag]["type"] == "boolean"
    assert {"type": "string"} in fields["target"]["anyOf"] and {"type": "string"} in fields["database_url"]["anyOf"]
    assert {"budget_constraints", "start_from_kept", "store", "json_path"} <= set(fields)
    return fields


def test_flow_signatures_give_one_typed_request_form() -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    for dep in load_deployments():
        flow = load_flow_from_entrypoint(str(ROOT / dep["entrypoint"]))
        schema = parameter_schema(flow).model_dump()
        if dep["entrypoint"].endswith(":check_regressions"):  # not an optimization: its own two fields
            assert set(schema["properties"]) == {"target", "store"} and not dep.get("parameters"), dep["name"]
            continue
        fields = assert_one_request_form(schema)
        assert set(dep.get("parameters") or {}) <= {"request"}, dep["name"]
        assert set((dep.get("parameters") or {}).get("request") or {}) <= set(fields), dep["name"]
        # a run with no parameters optimizes the flow's reference target
        flow_name = dep["entrypoint"].split(":")[1]
        assert schema["properties"]["request"]["default"]["target"] == FLOW_TARGETS[flow_name]


# --- a real server, deploy, a process worker --------------------------------------------------

def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PREFECT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The session's real `prefect server start` on loopback, the process pool, and `prefect deploy --all`."""
    tmp = tmp_path_factory.mktemp("prefect-deploy")
    api_url = prefect_server.api_url
    env = prefect_server.child_env(tmp / "home")
    timings: dict[str, float] = {"server_start_s": prefect_server.start_s}
    try:
        # --overwrite: test_parallel_studies may have created this pool (prefect.yaml names it) on the same server
        pool = run_cli(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
        assert pool.returncode == 0, pool.stdout + pool.stderr
        t0 = time.monotonic()
        deploy = run_cli(["--no-prompt", "deploy", "--all"], env)
        timings["deploy_all_s"] = time.monotonic() - t0
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        yield {"api_url": api_url, "env": env, "tmp": tmp, "timings": timings, "server_log": prefect_server.log}
    finally:
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
    check = read_deployment(api_url, "check-regressions", "nightly")
    assert [s["schedule"]["cron"] for s in check["schedules"]] == [REGRESSIONS_CRON]
    assert check["parameter_openapi_schema"]["properties"]["store"]["default"] == ".perfagents/perfagents.duckdb"

    optimize = read_deployment(api_url, "optimize-target", "on-demand")
    assert optimize["work_pool_name"] == POOL
    assert optimize["enforce_parameter_schema"] is True
    assert optimize["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    assert_one_request_form(optimize["parameter_openapi_schema"])
    assert optimize["parameters"] == {"request": {"target": "ecommerce"}}
    nightly_form = nightly["parameter_openapi_schema"]
    assert_one_request_form(nightly_form)
    assert nightly_form["properties"]["request"]["default"]["target"] == "ecommerce"
    assert nightly["parameters"] == {"request": {"optimization_scope": "quick-win"}}


@pytest.mark.deploy
@pytest.mark.timeout(240)
def test_an_unknown_scope_is_refused_before_a_run_exists(deployed: dict[str, Any]) -> None:
    request = {"target": MINI_SPEC, "optimization_scope": "fastest"}
    bad = run_cli(["deployment", "run", "optimize-target/on-demand", "--param", f"request={json.dumps(request)}"],
                  deployed["env"])
    assert bad.returncode != 0, bad.stdout
    assert "fastest" in bad.stdout + bad.stderr
    runs = httpx.post(f"{deployed['api_url']}/flow_runs/filter",
                      json={"flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING"]}}}},
                      timeout=10)
    assert [r for r in runs.json()
            if (r["parameters"].get("request") or {}).get("optimization_scope") == "fastest"] == []


@pytest.mark.deploy
@pytest.mark.timeout(240)
def test_optimize_target_runs_to_completion_through_a_process_worker(deployed: dict[str, Any]) -> None:
    api_url, env, tmp, timings = deployed["api_url"], deployed["env"], deployed["tmp"], deployed["timings"]
    store, result = tmp / "store.duckdb", tmp / "result.json"
    worker_log = tmp / "worker.log"
    # the run profiles nothing (PERFAGENTS_AGENTS=none, inherited by the flow run's process): this
    # test is about the deployment's plumbing, not about two 13 s profiling windows with every agent
    worker = start_process([str(PREFECT), "worker", "start", "--pool", POOL, "--limit", "1"],
                           {**env, "PERFAGENTS_AGENTS": "none"}, worker_log)
    try:
        t0 = time.monotonic()
        # run from another folder: the deployment's pull step must bring the run to the checkout
        request = {"target": MINI_SPEC, "optimization_scope": "quick-win", "store": str(store),
                   "json_path": str(result)}
        started = subprocess.run(
            [str(PREFECT), "deployment", "run", "optimize-target/on-demand", "--param", f"request={json.dumps(request)}"],
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
