"""Start and stop the shop server, and run the locustfile against it (loopback only, bounded).

Used by ``measure_bottlenecks``; tests have their own fixture so they exercise the CLI as a
user would.
"""

from __future__ import annotations

import csv
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

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
LOCUST_GRACE_S = 60


class ShopProcessError(RuntimeError):
    """The shop did not start, or the load run failed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningShop:
    proc: subprocess.Popen[bytes]
    url: str


def stop_shop(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM the server, SIGKILL its session if it is still there after STOP_TIMEOUT_S."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait(5)


@contextmanager
def running_shop(db: Path, env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[RunningShop]:
    """The shop on a free loopback port until the block ends."""
    port = free_port()
    full_env = {**os.environ, "SHOP_DB": str(db), **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "reference_workflows.ecommerce.app", "--port", str(port)],
                            cwd=REPO, env=full_env, start_new_session=True, stdout=out, stderr=out)
    shop = RunningShop(proc, f"http://127.0.0.1:{port}")
    try:
        wait_ready(shop)
        yield shop
    finally:
        stop_shop(proc)
        if log:
            out.close()  # type: ignore[union-attr]


def wait_ready(shop: RunningShop) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if shop.proc.poll() is not None:
            raise ShopProcessError(f"shop exited with code {shop.proc.returncode} before it was ready")
        try:
            if httpx.get(f"{shop.url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ShopProcessError(f"shop at {shop.url} not ready after {READY_TIMEOUT_S} s")


@dataclass(frozen=True)
class EndpointStats:
    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float
    avg_bytes: float


def run_locust(url: str, out_prefix: Path, *, users: int = 20, duration_s: int = 20) -> dict[str, EndpointStats]:
    """One headless Locust run of the shop's locustfile; per-name stats from its CSV."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
           "-r", str(users), "-t", f"{duration_s}s", "-H", url, "--csv", str(out_prefix), "--only-summary",
           "--loglevel", "WARNING"]
    try:
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=duration_s + LOCUST_GRACE_S)
    except subprocess.TimeoutExpired as exc:
        raise ShopProcessError(f"locust overran {duration_s + LOCUST_GRACE_S} s") from exc
    stats_file = Path(f"{out_prefix}_stats.csv")
    if not stats_file.is_file():
        raise ShopProcessError(f"locust wrote no stats (exit {result.returncode}): {result.stderr[-300:]}")
    out = {}
    with stats_file.open() as f:
        for row in csv.DictReader(f):
            name = "total" if row["Name"] == "Aggregated" else row["Name"]
            out[name] = EndpointStats(name, int(row["Request Count"]), int(row["Failure Count"]),
                                      float(row["50%"]), float(row["95%"]), float(row["99%"]),
                                      float(row["Requests/s"]), float(row["Average Content Size"]))
    return out
