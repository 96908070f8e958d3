"""Run the step shape in a real headless Locust against a real local HTTP server."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tasks.analysis.capacity import read_step_plan, step_plan, throughput_by_level

ROOT = Path(__file__).resolve().parents[3]
LOCUST = ROOT / ".venv" / "bin" / "locust"
SHAPE = ROOT / "tasks" / "load" / "step_shape.py"
LEVELS, STEP_S = [1, 2, 4], 2.0
START_MARGIN_S = 45.0  # Locust start-up and shutdown on a busy 2-core machine

# a tiny user: each user sends one request per ~0.1 s; a listener logs each request's
# start time and outcome (the project's own listener is tested on its own)
USER_FILE = """
import os
from locust import FastHttpUser, constant, events, task

LOG = open(os.environ["STEP_TEST_LOG"], "w", buffering=1)

@events.request.add_listener
def on_request(start_time, exception, **_kwargs):
    LOG.write(f"{start_time},{'' if exception is None else 'fail'}\\n")

class Browser(FastHttpUser):
    wait_time = constant(0.1)

    @task
    def index(self):
        self.client.get("/")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<p>ok</p>")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("http.server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_step_shape_steps_users_and_stops_by_itself(tmp_path, http_server):
    user_file = tmp_path / "users.py"
    user_file.write_text(USER_FILE)
    plan_out, log = tmp_path / "plan.json", tmp_path / "requests.csv"
    env = {
        **os.environ,
        "PERFAGENTS_STEPS": ",".join(map(str, LEVELS)),
        "PERFAGENTS_STEP_S": str(STEP_S),
        "PERFAGENTS_STEP_PLAN_OUT": str(plan_out),
        "STEP_TEST_LOG": str(log),
    }
    command = [
        str(LOCUST), "--headless", "-f", f"{user_file},{SHAPE}", "--host", http_server,
        "--csv", str(tmp_path / "run"), "--csv-full-history", "--loglevel", "WARNING",
    ]  # fmt: skip
    planned = len(LEVELS) * STEP_S
    started = time.time()
    with open(tmp_path / "locust.err", "w") as err:
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            proc.wait(timeout=planned + START_MARGIN_S)  # raises if the shape never stops it
        finally:
            stop(proc)
    ended = time.time()
    assert proc.returncode == 0, (tmp_path / "locust.err").read_text()[-2000:]

    # the plan the shape wrote matches tasks.analysis.capacity.step_plan and lies inside the run
    plan = read_step_plan(plan_out)
    start_ts = plan[0]["start_ts"]
    assert plan == step_plan(LEVELS, STEP_S, start_ts)
    assert started < start_ts and plan[-1]["end_ts"] <= ended

    # Locust's own stats history saw the user count step up 1 -> 2 -> 4
    with open(tmp_path / "run_stats_history.csv") as fh:
        counts = [
            int(row["User Count"]) for row in csv.DictReader(fh) if row["Name"] == "Aggregated"
        ]
    seen = [c for i, c in enumerate(counts) if c and (i == 0 or c != counts[i - 1])]
    assert seen == LEVELS, counts

    # no request started after the last step ended (beyond a stop grace)
    rows = [line.split(",") for line in log.read_text().splitlines() if line]
    samples = pl.DataFrame(
        {"ts": [float(r[0]) for r in rows], "error": [r[1] or None for r in rows]},
        schema={"ts": pl.Float64, "error": pl.Utf8},
    )
    assert samples["ts"].min() >= start_ts - 0.5
    assert samples["ts"].max() <= plan[-1]["end_ts"] + 1.0
    # and the measured throughput rises with the step's users
    table = throughput_by_level(samples, plan)
    assert table["users"].to_list() == LEVELS
    rps = table["rps"].to_list()
    assert rps[0] < rps[1] < rps[2] and rps[2] > 2 * rps[0], table
    assert table["failures"].sum() == 0
    print(f"locust wall {ended - started:.1f}s for {planned:.0f}s planned; rps by level {rps}")


def test_step_shape_refuses_a_malformed_plan_before_sending_load(tmp_path):
    user_file = tmp_path / "users.py"
    user_file.write_text(USER_FILE)
    env = {**os.environ, "PERFAGENTS_STEPS": "1,x", "STEP_TEST_LOG": str(tmp_path / "requests.csv")}
    command = [
        str(LOCUST),
        "--headless",
        "-f",
        f"{user_file},{SHAPE}",
        "--host",
        "http://127.0.0.1:9",
    ]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=START_MARGIN_S)
    finally:
        stop(proc)
    assert proc.returncode != 0
    assert "PERFAGENTS_STEPS='1,x' is not a comma-separated list" in err.strip().splitlines()[-1]
    assert (tmp_path / "requests.csv").read_text() == ""
