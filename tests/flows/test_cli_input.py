"""Bad input found only when the run starts: one line on stderr, exit code 2, nothing written.

Every input that can be refused before anything starts is in the corpus (tests/flows/bad_input).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_unreachable_base_url_fails_before_load(tmp_path: Path) -> None:
    port = closed_port()
    spec = spec_file(tmp_path, base_url=f"http://127.0.0.1:{port}", start=None, knobs={})
    proc = run_cli("run", str(spec), "--store", str(tmp_path / "s" / "s.duckdb"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "unreachable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_failing_setup_command_is_one_line_not_the_flow_engines_traceback(tmp_path: Path, shared_prefect_api) -> None:
    """Found only when the run starts (inside the Prefect flow): Prefect logs the flow's failure
    at ERROR with a traceback; the terminal shows our one line. (The session's Prefect server:
    an ephemeral one, its first start migrating a new database, took 12 of this test's 17 s;
    tests/flows/test_ephemeral.py covers that path.)"""
    spec = spec_file(tmp_path, setup=[["python", "no_such_seed.py"]])
    proc = subprocess.run([str(PERFAGENTS), "run", str(spec), "--store", str(tmp_path / "s.duckdb")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "no_such_seed.py" in proc.stderr
