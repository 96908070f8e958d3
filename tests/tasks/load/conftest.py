"""A tiny real Starlette app on a free loopback port, and a spec factory for it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tasks.spec import TargetSpec

APP = Path(__file__).with_name("tiny_app.py")
READY_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(APP), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tiny app exited: {proc.stderr.read().decode()[-500:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tiny app did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _make_spec(spec_dir: Path, base_url: str, **load: object) -> TargetSpec:
    defaults: dict[str, object] = {"users": 2, "spawn_rate": 20, "duration_s": 2, "warmup_s": 1}
    return TargetSpec(name="tiny", base_url=base_url, load={**defaults, **load}, spec_dir=spec_dir)


@pytest.fixture
def make_spec():
    """``make_spec(spec_dir, base_url, **load)`` -> a TargetSpec with a short default window."""
    return _make_spec


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nobody listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"
