"""Bad input: one line on stderr, exit code 2, nothing written, no load sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PERFAGENTS = Path(sys.executable).parent / "perfagents"

GOOD = {
    "name": "shop",
    "base_url": "http://127.0.0.1:{port}",
    "start": {"command": ["python", "-m", "http.server", "{port}"]},
    "load": {"endpoints": [{"name": "home", "path": "/"}], "duration_s": 5},
    "knobs": {"workers": {"type": "int", "low": 1, "high": 2, "default": 1, "apply": {"env": "W"}}},
}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PERFAGENTS), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def spec_file(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "target.yaml"
    spec = {**GOOD, **overrides}
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}))
    return path


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("overrides", "args", "needle"),
    [
        ({"performance_goals": ["p95_ms<=fast"]}, [], "'fast'"),
        ({"knobs": {"w": {"type": "integer", "default": 1, "apply": {"env": "W"}}}}, [], "unknown type 'integer'"),
        ({"load": {"locustfile": "nowhere.py"}}, [], "nowhere.py"),
        ({}, ["--goals", "p95_ms<=>3"], "bad expression"),
        ({}, ["--budget", "minutes=soon"], "minutes"),
        ({}, ["--scope", "everything"], "scope"),
        ({}, ["--quality", "latency<=3"], "'latency'"),
        ({"base_url": "http://10.1.2.3:8080", "start": None}, [], "--allow-remote"),
        ({}, ["--scope", ""], "scope"),
        ({}, ["--goals", "p95_ms<=1e999"], "finite"),
        ({}, ["--quality", "error_rate<=5"], "fraction"),
        ({}, ["--budget", "minutes=inf"], "minutes"),
        ({"knobs": {"w": {"type": "int", "low": 3, "high": 1, "default": 2, "apply": {"env": "W"}}}}, [], "low 3"),
        ({"base_url": "http://127.0.0.1:notaport/", "start": None}, [], "base_url"),
        ({"load": {"endpoints": [{"name": "x", "path": "http://evil.example/"}]}}, [], "path on base_url"),
        ({"database": {"url": "postgresql://u@127.0.0.1/db?host=db.prod.example.com"}}, [], "not loopback"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, overrides: dict, args: list[str], needle: str) -> None:
    spec = spec_file(tmp_path, **overrides)
    store = tmp_path / "state" / "store.duckdb"
    proc = run_cli("run", str(spec), "--store", str(store), "--json", str(tmp_path / "out.json"), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not store.parent.exists() and not (tmp_path / "out.json").exists()


def test_missing_spec_file(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path / "absent.yaml"), "--store", str(tmp_path / "s.duckdb"), cwd=tmp_path)
    assert proc.returncode == 2 and "absent.yaml" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_base_url_fails_before_load(tmp_path: Path) -> None:
    port = closed_port()
    spec = spec_file(tmp_path, base_url=f"http://127.0.0.1:{port}", start=None, knobs={})
    proc = run_cli("run", str(spec), "--store", str(tmp_path / "s" / "s.duckdb"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "unreachable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_revert_and_history_without_store(tmp_path: Path) -> None:
    for command in ("revert", "history"):
        proc = run_cli(command, "--store", str(tmp_path / "none.duckdb"), cwd=tmp_path)
        assert proc.returncode == 2 and "no store" in proc.stderr


def test_an_unknown_agent_in_the_environment_is_refused_before_a_run(tmp_path: Path) -> None:
    spec = spec_file(tmp_path)
    store = tmp_path / "state" / "store.duckdb"
    proc = subprocess.run([str(PERFAGENTS), "run", str(spec), "--store", str(store)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PERFAGENTS_AGENTS": "application,profiler"})
    assert proc.returncode == 2, proc.stderr
    assert "PERFAGENTS_AGENTS" in proc.stderr and "profiler" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not store.parent.exists()


def test_a_store_that_is_not_ours_is_one_line_and_left_unchanged(tmp_path: Path) -> None:
    import duckdb

    garbage = tmp_path / "garbage.duckdb"
    garbage.write_text("not a database")
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE t (a INT)")
    for store, needle in ((garbage, "not a valid DuckDB"), (foreign, "not a perfagents store")):
        for command in (["revert"], ["history"], ["history", "--limit", "5"]):
            proc = run_cli(*command, "--store", str(store), cwd=tmp_path)
            assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    with duckdb.connect(str(foreign)) as con:
        assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == [("t",)]
    proc = run_cli("history", "--limit", "-1", "--store", str(foreign), cwd=tmp_path)
    assert proc.returncode == 2 and "--limit" in proc.stderr
