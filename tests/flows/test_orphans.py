"""A SIGKILLed run leaves no process behind: its target, its Locust and Prefect's temporary API
server (which Prefect starts as a plain child) all die with it (found by benchmarks/kill_campaign.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

MINI = Path(__file__).resolve().parent / "mini_target"
PERFAGENTS = Path(sys.executable).parent / "perfagents"
GONE_WITHIN_S = 10.0


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.e2e
def test_a_killed_run_leaves_no_process_behind(tmp_path: Path) -> None:
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec["start"]["cwd"] = str(MINI)
    spec["load"].update(duration_s=30)  # killed during its first window
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # its own temporary server
    env["PERFAGENTS_AGENTS"] = "none"
    run = subprocess.Popen([str(PERFAGENTS), "run", "target.yaml", "--store", "store.duckdb", "--quiet"], cwd=tmp_path,
                           env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            for child in psutil.Process(run.pid).children(recursive=True):
                try:
                    seen[child.pid] = " ".join(child.cmdline())
                except psutil.NoSuchProcess:
                    continue
            kinds = {k for k, key in (("server", "prefect.server.api.server"), ("locust", "locust"),
                                      ("target", "app.py")) if any(key in c for c in seen.values())}
            if kinds == {"server", "locust", "target"}:
                break
            time.sleep(0.2)
        assert run.poll() is None, "the run ended before it was killed"
        os.kill(run.pid, signal.SIGKILL)  # the run alone, as the OOM killer would
        run.wait(10)
        assert kinds == {"server", "locust", "target"}, seen
        deadline = time.monotonic() + GONE_WITHIN_S
        alive = list(seen)
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in alive if _alive(p)]
        assert not alive, [seen[p] for p in alive]
    finally:
        for pid in [run.pid, *seen]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
