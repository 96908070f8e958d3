"""A run SIGKILLed after a change was applied; `perfagents revert` restores schema and knobs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tasks.target import free_port

ROOT = Path(__file__).resolve().parents[2]
PERFAGENTS = Path(sys.executable).parent / "perfagents"
MINI = Path(__file__).resolve().parent / "mini_target"
pytestmark = pytest.mark.usefixtures("shared_prefect_api")  # tests/flows/conftest.py


@pytest.fixture
def mini():
    """The mini target's app, started by the test (the run attaches to it and sets its live knob)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", str(port)], cwd=MINI, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def write_spec(tmp_path: Path, spec: dict) -> Path:
    spec["performance_goals"] = ["p95_ms<=0.001"]  # never met: the run goes on until killed
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def started_spec(tmp_path: Path) -> Path:
    """perfagents seeds and starts the shop itself; its database lives in the run's workdir."""
    spec = yaml.safe_load((ROOT / "reference_workflows/ecommerce/target.yaml").read_text())
    spec["start"]["cwd"] = str(ROOT)
    spec["setup"] = [[*spec["setup"][0], "--scale", "0.3"]]
    spec["knobs"] = {}
    spec["load"].update(locustfile=str(ROOT / "reference_workflows/ecommerce/locustfile.py"),
                        duration_s=6, warmup_s=1, users=8, profile_s=6)  # 4 s windows fell under the gate's 200 samples
    spec.pop("frontend")
    return write_spec(tmp_path, spec)


def attached_spec(tmp_path: Path, url: str) -> Path:
    """The mini target runs on its own; perfagents attaches and tunes its live (HTTP) knob."""
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec.pop("start")
    spec["base_url"] = url
    return write_spec(tmp_path, spec)


def perfagents_indexes(db: Path) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index' AND name LIKE 'perfagents%'")]
    finally:
        con.close()


def cache_on(url: str) -> bool:
    return bool(httpx.get(url + "/admin/config", timeout=5).json()["cache"])


def run_until(tmp_path: Path, spec: Path, store: Path, applied) -> None:
    """Start a run, wait until `applied()` holds, then SIGKILL the whole run."""
    run = subprocess.Popen([str(PERFAGENTS), "run", str(spec), "--store", str(store), "--quiet"], cwd=tmp_path,
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not applied():
            assert run.poll() is None, run.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no change was applied in time"
            time.sleep(0.2)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(10)
    assert applied()  # the change outlived the killed run


def revert(tmp_path: Path, store: Path) -> None:
    proc = subprocess.run([str(PERFAGENTS), "revert", "--store", str(store)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    again = subprocess.run([str(PERFAGENTS), "revert", "--store", str(store)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert "nothing to revert" in again.stdout


@pytest.mark.e2e
def test_sigkill_after_index_then_revert_restores_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFAGENTS_AGENTS", "database")  # the index comes from its findings
    store = tmp_path / "state" / "store.duckdb"

    def applied() -> bool:
        return any(perfagents_indexes(db) for db in (tmp_path / "state" / "work").glob("*/shop.db"))

    run_until(tmp_path, started_spec(tmp_path), store, applied)
    revert(tmp_path, store)
    (db,) = (tmp_path / "state" / "work").glob("*/shop.db")
    assert perfagents_indexes(db) == []


@pytest.mark.e2e
def test_sigkill_after_knob_then_revert_restores_knob(tmp_path: Path, mini: str, agents_off: None) -> None:
    store = tmp_path / "store.duckdb"
    run_until(tmp_path, attached_spec(tmp_path, mini), store, lambda: cache_on(mini))
    revert(tmp_path, store)
    assert not cache_on(mini)
