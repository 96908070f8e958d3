"""Run the enterprise API server as a subprocess on a free loopback port (tests, measurements).

    with running_app("sqlite:////tmp/api.db", env={"API_POOL_SIZE": "8"}) as app:
        httpx.get(app.base_url + "/health")

The server runs in its own session (one process group); on exit it gets SIGTERM, then
SIGKILL after ``STOP_TIMEOUT_S``. A server that exits or is not ready within
``READY_TIMEOUT_S`` raises ``AppStartError`` with the last line of its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.1


class AppStartError(RuntimeError):
    """The server exited or did not answer /health in time."""


@dataclass
class RunningApp:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_app(app: RunningApp, timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM the server's process group, SIGKILL it after ``timeout_s``; its exit code."""
    if app.process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(app.process.pid, signal.SIGTERM)
        try:
            app.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(app.process.pid, signal.SIGKILL)
            app.process.wait(timeout_s)
    with suppress(ProcessLookupError):  # workers left behind by a crashed launcher
        os.killpg(app.process.pid, signal.SIGKILL)
    return int(app.process.returncode)


def wait_ready(app: RunningApp, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if app.process.poll() is not None:
            lines = app.log_text().strip().splitlines() or ["(no output)"]
            raise AppStartError(f"server exited with {app.process.returncode}: {lines[-1]}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{app.base_url}/health", timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AppStartError(f"server not ready at {app.base_url} within {timeout_s:g} s")
        time.sleep(POLL_S)


@contextmanager
def running_app(db_url: str, env: dict[str, str] | None = None, *, port: int | None = None,
                ready_timeout_s: float = READY_TIMEOUT_S, log_dir: Path | None = None) -> Iterator[RunningApp]:
    """Start ``python -m reference_workflows.enterprise_api.app`` and stop it afterwards."""
    port = port or free_port()
    folder = Path(log_dir or tempfile.gettempdir())
    log_path = folder / f"enterprise-api-{port}.log"
    full_env = {**os.environ, "API_DB": db_url, **(env or {})}
    command = [sys.executable, "-m", "reference_workflows.enterprise_api.app", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    app = RunningApp(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(app, ready_timeout_s)
        yield app
    finally:
        stop_app(app)
        if log_dir is None:
            log_path.unlink(missing_ok=True)
