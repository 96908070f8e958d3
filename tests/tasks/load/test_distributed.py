"""Locust as a master and two workers against a real app: one window, every sample once, no process left."""

from __future__ import annotations

import textwrap
from pathlib import Path

import polars as pl
import psutil
import pytest

import tasks.load.processes as processes_mod
from tasks.errors import LoadTestError
from tasks.load.runner import run_load_test
from tasks.load.samples import read_samples

USER = '''
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class Shop(FastHttpUser):
    wait_time = constant(0.005)

    @task(3)
    def fast(self):
        self.client.get("/fast", name="fast")

    @task(1)
    def boom(self):
        self.client.get("/boom", name="boom")
'''


def locust_processes(workdir: Path) -> list[psutil.Process]:
    """Live Locust processes of this test (their command lines name files in ``workdir``)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(workdir) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture
def spec(tmp_path, make_spec):
    (tmp_path / "locustfile.py").write_text(textwrap.dedent(USER))
    return make_spec(tmp_path, "http://127.0.0.1:1", locustfile="locustfile.py", users=4, spawn_rate=40)


def test_two_workers_merged_count_equals_locust_total(app_url, spec, tmp_path):
    workdir = tmp_path / "work"
    result = run_load_test(spec, app_url, workdir, label="two workers", processes=2, warmup_s=1, duration_s=3)

    assert result.processes == 2
    assert "--master" in result.command and "--expect-workers" in result.command
    # every request Locust's master counted is in the merged window, once
    assert result.locust_requests is not None and result.locust_requests > 0
    assert result.recorded_requests == result.locust_requests
    assert result.count_mismatch is None
    per_worker = [read_samples(workdir / f"two_workers.samples.w{i}.csv") for i in (1, 2)]
    assert all(frame.height > 0 for frame in per_worker), "both workers made requests"
    assert sum(frame.height for frame in per_worker) == result.recorded_requests
    merged = read_samples(result.samples_path)
    assert merged.height == result.recorded_requests
    assert merged.equals(pl.concat(per_worker).sort("ts", maintain_order=True))
    assert result.locust_failures == merged["error"].is_not_null().sum()
    # the measured part is the merged window's, both endpoints in it
    assert result.samples.height > 0
    assert result.samples["ts"].min() >= result.measure_start and result.samples["ts"].max() < result.ended_at
    assert set(result.samples["endpoint"].unique()) == {"fast", "boom"}
    # each process sampled on its own; the gate sees the busiest one
    roles = set(result.loadgen_resources["role"].unique())
    assert roles == {"loadgen-master", "loadgen-1", "loadgen-2"}
    assert set(result.loadgen_cpu_by_role) == roles
    assert result.loadgen_cpu_pct == max(result.loadgen_cpu_by_role.values())
    assert result.loadgen_cpu_by_role["loadgen-1"] > 0 and result.loadgen_cpu_by_role["loadgen-2"] > 0
    assert locust_processes(workdir) == []


def test_overrun_stops_master_and_workers(app_url, spec, tmp_path):
    workdir = tmp_path / "work"
    with pytest.raises(LoadTestError, match="overran its 6 s bound"):
        run_load_test(spec, app_url, workdir, processes=2, duration_s=60, timeout_s=6)
    assert locust_processes(workdir) == []


def test_an_exception_while_workers_run_stops_them_all(app_url, spec, tmp_path, monkeypatch):
    """The master and the first worker are up when the toolkit fails: nothing is left behind."""
    workdir = tmp_path / "work"
    started: list[int] = []

    class FailingSampler(processes_mod.ProcessTreeSampler):
        def start(self):
            started.extend(self.pids())
            if self.role == "loadgen-2":
                raise RuntimeError("the toolkit failed mid-window, on purpose")
            return super().start()

    monkeypatch.setattr(processes_mod, "ProcessTreeSampler", FailingSampler)
    with pytest.raises(RuntimeError, match="on purpose"):
        run_load_test(spec, app_url, workdir, processes=2, duration_s=30)
    assert len(started) >= 3  # master, worker 1, worker 2 were running
    assert locust_processes(workdir) == []
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in started)


def test_workers_that_never_start_are_one_line_error(app_url, make_spec, tmp_path):
    (tmp_path / "locustfile.py").write_text("from locust import HttpUser\nclass Broken(HttpUser:\n    pass\n")
    spec = make_spec(tmp_path, app_url, locustfile="locustfile.py")
    workdir = tmp_path / "work"
    with pytest.raises(LoadTestError) as info:
        run_load_test(spec, app_url, workdir, processes=2)
    assert "\n" not in str(info.value) and "before the test started" in str(info.value)
    assert "SyntaxError" in str(info.value)
    assert locust_processes(workdir) == []
