"""The bad-input corpus (tests/flows/bad_input/cases.py) through the CLI's entry point: every case
ends with one stderr line naming the problem, exit code 2, no traceback, and nothing written.

The cases run in one process (tests/flows/bad_input/driver.py calls ``flows.cli.main(argv)`` per
case, ~10 s for all); a few run again as real ``perfagents`` subprocesses.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent / "bad_input"
PERFAGENTS = Path(sys.executable).parent / "perfagents"
MIN_CASES = 100
SUBPROCESS_CASES = ("spec-not-utf8", "store-run-garbage", "db-flag-03", "usage-limit-not-a-number")


def load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"perfagents_bad_input_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES: list[dict[str, Any]] = load("cases").CASES
driver = load("driver")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PERFAGENTS_AGENTS")}
    return {**env, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("bad-input")
    out = base / "results.json"
    proc = subprocess.run([sys.executable, str(HERE / "driver.py"), str(out), str(base / "cases")],
                          capture_output=True, text=True, timeout=300, env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["id"]: r for r in json.loads(out.read_text())}


def assert_refused(case: dict[str, Any], result: dict[str, Any]) -> None:
    said = f"{case['id']}: exit {result['code']}\nstderr: {result['stderr'][-2000:]}\nstdout: {result['stdout'][-500:]}"
    assert "Traceback" not in result["stderr"] + result["stdout"], said
    assert result["code"] == 2, said
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1, said
    assert case["needle"] in lines[0], said
    assert result["after"] == result["before"], f"{case['id']} wrote: " + json.dumps(
        {k: v for k, v in result["after"].items() if result["before"].get(k) != v})


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= MIN_CASES
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    assert_refused(case, results[case["id"]])


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_in_a_real_perfagents_process(case_id: str, tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c["id"] == case_id]
    argv = driver.prepare(case, tmp_path)
    before = driver.snapshot(tmp_path)
    proc = subprocess.run([str(PERFAGENTS), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**child_env(), **case.get("env", {})})
    assert_refused(case, {"code": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
                          "before": before, "after": driver.snapshot(tmp_path)})
