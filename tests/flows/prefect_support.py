"""A real `prefect server start` on loopback for the flow tests, and its child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).with_name("prefect")
SERVER_START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    log: Path
    start_s: float

    def child_env(self, home: Path) -> dict[str, str]:
        """For a prefect child (CLI, worker): its own home, this server, no prompts, no telemetry."""
        return child_env(home, self.api_url)

    def run_env(self) -> dict[str, str]:
        """For a `perfagents run`: this environment with this server as the Prefect API, so the run
        does not start an ephemeral server of its own (a trivial flow: 7.4 s -> 1.4 s, measured)."""
        return {**os.environ, "PREFECT_API_URL": self.api_url}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_CLI_COLORS": "false",
        "PREFECT_CLI_WRAP_LINES": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        # the nightly schedule is stored, but a test server must not start an e-commerce run
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    })
    return env


@contextmanager
def prefect_server(folder: Path) -> Iterator[PrefectServer]:
    """`prefect server start` with its own home under ``folder``, healthy or the test fails; stopped after."""
    api_url = f"http://127.0.0.1:{free_port()}/api"
    log = folder / "server.log"
    t0 = time.monotonic()
    server = start_process([str(PREFECT), "server", "start", "--host", "127.0.0.1",
                            "--port", api_url.rsplit(":", 1)[1].split("/")[0]],
                           child_env(folder / "home", api_url), log)
    try:
        wait_for_health(api_url, server, log)
        yield PrefectServer(api_url, log, time.monotonic() - t0)
    finally:
        stop_process(server)


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it and every descendant (flow runs get their own group)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            break
        except subprocess.TimeoutExpired:
            continue
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=5)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def wait_for_health(api_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with {proc.returncode}:\n{tail(log)}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy within {SERVER_START_TIMEOUT_S} s:\n{tail(log)}")
