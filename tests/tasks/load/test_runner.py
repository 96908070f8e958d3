"""Real Locust windows against a real app: every request is a sample, warm-up excluded."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import polars as pl
import psutil
import pytest

from tasks.errors import LoadTestError, SpecError, UnsafeTargetError
from tasks.load.runner import LoadResult, run_load_test
from tasks.load.samples import SAMPLE_SCHEMA, read_samples

FAST_USER = '''
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class Shop(FastHttpUser):
    wait_time = constant(0.01)

    @task(3)
    def fast(self):
        self.client.get("/fast", name="fast")

    @task(1)
    def boom(self):
        self.client.get("/boom", name="boom")

    @task(1)
    def caught(self):
        with self.client.get("/fast", name="caught", catch_response=True) as resp:
            resp.failure("body check failed, on purpose")
'''

HTTP_USER = '''
import json
import os

from locust import constant, events, task
from locust import HttpUser


@events.init.add_listener
def _record_affinity(**_kwargs):
    with open(os.environ["AFFINITY_FILE"], "w") as fh:
        json.dump(sorted(os.sched_getaffinity(0)), fh)


class Shop(HttpUser):
    wait_time = constant(0.01)

    @task(2)
    def item(self):
        self.client.get("/items/7", name="/items/[id]")

    @task(1)
    def forgiven(self):
        with self.client.get("/boom", name="boom-ok", catch_response=True) as resp:
            resp.success()

    @task(1)
    def refused(self):
        self.client.get(os.environ["REFUSED_URL"], name="refused")
'''

SHAPE = '''
from locust import LoadTestShape


class Steps(LoadTestShape):
    def tick(self):
        run_time = self.get_run_time()
        if run_time < 1.5:
            return (1, 10)
        if run_time < 3:
            return (3, 10)
        return None
'''


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def check_complete(result: LoadResult) -> None:
    """Every request Locust counted is a sample: warm-up + measured + tail == Locust's total."""
    assert result.locust_requests is not None
    assert result.warmup_requests + result.requests + result.tail_requests == result.locust_requests
    assert result.samples.schema == pl.Schema(SAMPLE_SCHEMA)
    assert result.samples.height > 0
    assert result.samples["ts"].min() >= result.measure_start
    assert result.samples["ts"].max() < result.ended_at
    assert result.ended_at - result.measure_start == pytest.approx(result.duration_s)


def locust_csv_counts(result: LoadResult) -> dict[str, int]:
    stats = pl.read_csv(f"{result.csv_prefix}_stats.csv")
    return dict(zip(stats["Name"], stats["Request Count"], strict=True))


def test_fasthttp_locustfile_every_request_recorded(app_url, make_spec, tmp_path):
    write(tmp_path / "locustfile.py", FAST_USER)
    spec = make_spec(tmp_path, app_url, locustfile="locustfile.py", users=2)
    result = run_load_test(spec, app_url, tmp_path / "work", label="fast window")

    check_complete(result)
    assert result.locust_exit_code == 1  # some requests failed: not a crash
    assert result.user_errors == 0
    assert result.warmup_requests > 0
    assert result.duration_s == pytest.approx(2, abs=0.01)
    by_name = {name: frame for (name,), frame in result.samples.group_by("endpoint")}
    assert set(by_name) == {"fast", "boom", "caught"}
    assert by_name["fast"]["status"].unique().to_list() == [200]
    assert by_name["fast"]["error"].null_count() == by_name["fast"].height
    assert by_name["fast"]["bytes"].unique().to_list() == [100]
    assert by_name["boom"]["status"].unique().to_list() == [500]
    assert by_name["boom"]["error"].unique().to_list() == ["HTTP 500"]
    assert by_name["caught"]["error"].unique().to_list() == ["body check failed, on purpose"]
    assert result.samples["method"].unique().to_list() == ["GET"]
    assert (result.samples["latency_ms"] > 0).all()
    every = read_samples(result.samples_path)
    assert result.locust_failures == every["error"].is_not_null().sum()

    # Locust's own stats CSV misses the last second: it never counts more than the samples
    csv_counts = locust_csv_counts(result)
    total_samples = result.warmup_requests + result.requests + result.tail_requests
    assert 0 < csv_counts["Aggregated"] <= total_samples

    # the load generator's own CPU, sampled while it ran
    assert result.loadgen_resources.height >= 3
    assert set(result.loadgen_resources["role"].unique()) == {"loadgen"}
    assert 0 < result.loadgen_cpu_pct <= result.loadgen_cpu_max
    assert (tmp_path / "work" / "fast_window.samples.csv").is_file()


def test_http_user_pinned_with_refused_connection(app_url, make_spec, tmp_path, closed_url):
    write(tmp_path / "locustfile.py", HTTP_USER)
    spec = make_spec(tmp_path, app_url, locustfile="locustfile.py", users=2)
    cpu = max(os.sched_getaffinity(0))
    affinity_file = tmp_path / "affinity.json"
    env = {"AFFINITY_FILE": str(affinity_file), "REFUSED_URL": f"{closed_url}/nothing"}
    result = run_load_test(spec, app_url, tmp_path / "work", cpu=cpu, extra_env=env)

    check_complete(result)
    assert json.loads(affinity_file.read_text()) == [cpu]
    by_name = {name: frame for (name,), frame in result.samples.group_by("endpoint")}
    assert set(by_name) == {"/items/[id]", "boom-ok", "refused"}
    assert by_name["/items/[id]"]["status"].unique().to_list() == [200]
    # a 500 the locustfile declared a success: status kept, no error
    assert by_name["boom-ok"]["status"].unique().to_list() == [500]
    assert by_name["boom-ok"]["error"].null_count() == by_name["boom-ok"].height
    refused = by_name["refused"]
    assert refused["status"].unique().to_list() == [0]
    assert refused["error"].null_count() == 0
    assert "refused" in refused["error"][0].lower()


def test_generated_scenario(app_url, make_spec, tmp_path):
    endpoints = [
        {"name": "item", "path": "/items/{int:1:5}?page={int:10:12}", "weight": 4},
        {"name": "echo", "path": "/echo", "method": "POST", "json": {"q": "it's \"quoted\""}, "weight": 1},
    ]
    spec = make_spec(tmp_path, app_url, endpoints=endpoints, users=2)
    result = run_load_test(spec, app_url, tmp_path / "work", warmup_s=0.5, duration_s=2)

    check_complete(result)
    assert result.locust_exit_code == 0
    # the listener quit Locust at warm-up + duration + tail (3.0 s), not at --run-time's whole 4 s
    meta = json.loads(Path(f"{result.samples_path}.meta.json").read_text())
    assert 2.9 <= meta["test_stop"] - meta["test_start"] < 3.5
    assert "--run-time" in result.command and "4s" in result.command
    assert result.samples["error"].null_count() == result.requests
    assert result.samples["status"].unique().to_list() == [200]
    counts = dict(result.samples.group_by("endpoint").len().iter_rows())
    assert set(counts) == {"item", "echo"}
    assert counts["item"] > 2 * counts["echo"]  # weights 4:1
    methods = dict(result.samples.select("endpoint", "method").unique().iter_rows())
    assert methods == {"item": "GET", "echo": "POST"}


def test_refused_connection_is_recorded_not_a_crash(make_spec, tmp_path, closed_url):
    spec = make_spec(tmp_path, closed_url, endpoints=[{"name": "home", "path": "/"}], users=1)
    result = run_load_test(spec, closed_url, tmp_path / "work", warmup_s=0.5, duration_s=1)

    check_complete(result)
    assert result.locust_exit_code == 1
    assert result.samples["status"].unique().to_list() == [0]
    assert result.samples["error"].null_count() == 0
    assert "refused" in result.samples["error"][0].lower()


def test_locustfile_with_syntax_error_is_one_line_error(app_url, make_spec, tmp_path):
    write(tmp_path / "locustfile.py", "from locust import HttpUser\nclass Broken(HttpUser:\n    pass\n")
    spec = make_spec(tmp_path, app_url, locustfile="locustfile.py")
    with pytest.raises(LoadTestError) as info:
        run_load_test(spec, app_url, tmp_path / "work")
    message = str(info.value)
    assert "\n" not in message
    assert "before the test started" in message
    assert "SyntaxError" in message


def test_tasks_that_only_raise_are_an_error(app_url, make_spec, tmp_path):
    write(tmp_path / "locustfile.py", """
        from locust import HttpUser, constant, task

        class Raiser(HttpUser):
            wait_time = constant(0.05)

            @task
            def explode(self):
                raise RuntimeError("no request, on purpose")
    """)
    spec = make_spec(tmp_path, app_url, locustfile="locustfile.py", users=1)
    with pytest.raises(LoadTestError, match="made no requests.*RuntimeError: no request, on purpose"):
        run_load_test(spec, app_url, tmp_path / "work", warmup_s=0, duration_s=1)


def test_non_numeric_port_is_a_spec_error(make_spec, tmp_path):
    spec = make_spec(tmp_path, "http://127.0.0.1:web", endpoints=[{"name": "home", "path": "/"}])
    with pytest.raises(SpecError, match="(?i)port"):
        run_load_test(spec, "http://127.0.0.1:web", tmp_path / "work")


def test_timeout_kills_locust_and_leaves_nothing_behind(app_url, make_spec, tmp_path):
    write(tmp_path / "locustfile.py", FAST_USER)
    spec = make_spec(tmp_path, app_url, locustfile="locustfile.py", users=1)
    workdir = tmp_path / "work"
    with pytest.raises(LoadTestError, match="overran its 3 s bound"):
        run_load_test(spec, app_url, workdir, duration_s=60, timeout_s=3)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(workdir) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_shape_file_drives_users_and_run_time(app_url, make_spec, tmp_path):
    write(tmp_path / "locustfile.py", FAST_USER)
    shape = write(tmp_path / "steps.py", SHAPE)
    spec = make_spec(tmp_path, app_url, locustfile="locustfile.py")
    result = run_load_test(spec, app_url, tmp_path / "work", shape_file=shape, duration_s=3)

    check_complete(result)
    assert result.warmup_requests == 0  # warm-up defaults to 0 for a shape
    assert result.tail_requests == 0
    assert 2.5 < result.duration_s < 8  # the shape ended the test (no --run-time was given)
    assert "--run-time" not in result.command


def test_remote_base_url_is_refused(make_spec, tmp_path):
    spec = make_spec(tmp_path, "http://example.com", endpoints=[{"name": "home", "path": "/"}])
    with pytest.raises(UnsafeTargetError):
        run_load_test(spec, "http://example.com", tmp_path / "work")


def test_locust_dies_with_a_sigkilled_run(app_url, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from pathlib import Path
        from tasks.load.runner import run_load_test
        from tasks.spec import TargetSpec
        spec = TargetSpec(name="tiny", base_url={app_url!r}, spec_dir=Path({str(tmp_path)!r}),
                          load={{"endpoints": [{{"name": "fast", "path": "/fast"}}], "users": 1, "spawn_rate": 5,
                                 "duration_s": 30, "warmup_s": 0}})
        run_load_test(spec, {app_url!r}, Path({str(tmp_path / "work")!r}), label="killed")
    """))
    runner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def locusts() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "locust" in cmdline and str(tmp_path / "work") in cmdline:
                found.append(proc)
        return found

    deadline = time.monotonic() + 30
    while not locusts():
        assert time.monotonic() < deadline and runner.poll() is None, "locust never started"
        time.sleep(0.2)
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    deadline = time.monotonic() + 10
    while locusts() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not locusts(), "locust kept loading the target after its run was killed"
