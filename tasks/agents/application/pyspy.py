"""py-spy in short, low-rate bursts, and what those bursts cost the target.

py-spy at 100 Hz took ~40% of a cheap endpoint's throughput on 2 cores (DESIGN.md), so the
agent samples at ``RATE_HZ`` in bursts of ``BURST_S`` separated by ``GAP_S`` of silence, and
``--nonblocking`` (the target is not paused per sample). Bursts alternate between a CPU
profile (running threads only) and a wall-clock profile (``--idle``: blocked threads too);
the difference on the event-loop thread is time the loop spent blocked. The off periods
between bursts are the control for the profiler's own cost (``measure_overhead``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

PYSPY_ENV = "PERFAGENTS_PYSPY"  # another py-spy binary
RATE_HZ = 20
BURST_S = 2  # py-spy's --duration takes whole seconds
GAP_S = 3.0
BURST_START_S = 0.5  # a burst's wall time beyond --duration (measured 2 s bursts: 1.6-2.4 s)
START_GRACE_S = 5.0  # py-spy start-up and writing its file, beyond --duration
INTERRUPT_GRACE_S = 2.0  # after SIGINT (window over), before SIGKILL
POLL_S = 0.05
MAX_FAILED_BURSTS = 2  # consecutive failures before the agent stops trying
MIN_PERIOD_S = 1.0  # on/off time needed on each side to compare throughput
_SUMMARY = re.compile(r"Samples: (\d+) Errors: (\d+)")


@dataclass
class Burst:
    start: float  # epoch s
    end: float
    idle: bool  # --idle: a wall-clock profile
    pid: int
    path: str
    exit_code: int | None = None
    samples: int = 0
    errors: int = 0
    cpu_s: float = 0.0  # py-spy's own user+system CPU
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"], out["end"], out["cpu_s"] = round(self.start, 3), round(self.end, 3), round(self.cpu_s, 4)
        return out


def find_pyspy() -> str | None:
    """The py-spy binary: $PERFAGENTS_PYSPY, next to this interpreter, or on PATH."""
    configured = os.environ.get(PYSPY_ENV)
    if configured:
        return configured if Path(configured).is_file() and os.access(configured, os.X_OK) else None
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return str(beside)
    return shutil.which("py-spy")


def pyspy_command(pyspy: str, pid: int, output: Path, *, rate_hz: int, duration_s: int, idle: bool) -> list[str]:
    command = [pyspy, "record", "--pid", str(pid), "--rate", str(rate_hz), "--duration", str(duration_s),
               "--format", "raw", "--output", str(output), "--nonblocking", "--full-filenames",
               "--threads", "--subprocesses"]
    return command + (["--idle"] if idle else [])


def run_burst(pyspy: str, pid: int, output: Path, *, rate_hz: int = RATE_HZ, duration_s: int = BURST_S,
              idle: bool = False, stop: threading.Event | None = None) -> Burst:
    """One bounded py-spy recording; ``stop`` ends it early (SIGINT: py-spy still writes its file)."""
    output.unlink(missing_ok=True)
    log = output.with_suffix(".log")
    burst = Burst(time.time(), 0.0, idle, pid, str(output))
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(pyspy_command(pyspy, pid, output, rate_hz=rate_hz, duration_s=duration_s, idle=idle),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            burst.end, burst.error = time.time(), f"py-spy did not start: {exc}"
            return burst
        status, cpu_s = _wait_bounded(proc, time.monotonic() + duration_s + START_GRACE_S, stop)
    burst.end, burst.cpu_s = time.time(), cpu_s
    burst.exit_code = os.waitstatus_to_exitcode(status) if status is not None else None
    text = log.read_text(errors="replace")
    summary = _SUMMARY.search(text)
    if summary:
        burst.samples, burst.errors = int(summary.group(1)), int(summary.group(2))
    if burst.exit_code != 0 or not output.is_file():
        burst.error = f"py-spy failed (exit code {burst.exit_code}): {last_error(text)}"
    return burst


def _wait_bounded(proc: subprocess.Popen[bytes], deadline: float, stop: threading.Event | None) -> tuple[int | None, float]:
    """Reap ``proc`` with wait4 (its CPU time comes with it); SIGINT on stop, SIGKILL past the deadline."""
    interrupted_at: float | None = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage.ru_utime + usage.ru_stime
        now = time.monotonic()
        if stop is not None and stop.is_set() and interrupted_at is None:
            proc.send_signal(signal.SIGINT)
            interrupted_at = now
        if now > deadline or (interrupted_at is not None and now > interrupted_at + INTERRUPT_GRACE_S):
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage.ru_utime + usage.ru_stime
        time.sleep(POLL_S)


def last_error(text: str) -> str:
    """py-spy's own error line ("Error: Permission denied ..."), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    useful = [line for line in lines if not line.startswith(("Stack backtrace", "note:")) and not line[:1].isdigit()]
    return (useful or ["no output"])[-1]


def measure_overhead(bursts: list[dict[str, Any]], samples: pl.DataFrame, *, rate_hz: int) -> dict[str, Any]:
    """Throughput and latency of requests started while py-spy ran versus while it did not."""
    intervals = sorted((b["start"], b["end"]) for b in bursts if b.get("exit_code") == 0)
    busy_s = sum(e - s for s, e in intervals)
    out: dict[str, Any] = {"rate_hz": rate_hz, "bursts": len(intervals),
                           "pyspy_cpu_s": round(sum(b.get("cpu_s", 0.0) for b in bursts), 3)}
    if not intervals or samples.height < 2:
        return {**out, "measured": False, "reason": "no bursts or no samples"}
    first, last = float(cast(float, samples["ts"].min())), float(cast(float, samples["ts"].max()))
    on_s = sum(max(0.0, min(e, last) - max(s, first)) for s, e in intervals)
    off_s = (last - first) - on_s
    if on_s < MIN_PERIOD_S or off_s < MIN_PERIOD_S:
        return {**out, "measured": False, "reason": f"on {on_s:.1f} s / off {off_s:.1f} s: too short to compare"}
    ts = samples["ts"].to_numpy()
    on_mask = _in_intervals(ts, intervals)
    on, off = samples.filter(pl.Series(on_mask)), samples.filter(~pl.Series(on_mask))
    rps_on, rps_off = on.height / on_s, off.height / off_s

    def pct(frame: pl.DataFrame, q: float) -> float | None:
        return round(float(cast(float, frame["latency_ms"].quantile(q))), 2) if frame.height else None

    p50_on, p50_off = pct(on, 0.5), pct(off, 0.5)
    return {**out, "measured": True, "on_s": round(on_s, 2), "off_s": round(off_s, 2),
            "duty_cycle": round(on_s / (on_s + off_s), 3),
            "rps_on": round(rps_on, 2), "rps_off": round(rps_off, 2),
            "throughput_loss": round(1 - rps_on / rps_off, 4) if rps_off > 0 else None,
            "p50_on_ms": p50_on, "p50_off_ms": p50_off, "p95_on_ms": pct(on, 0.95), "p95_off_ms": pct(off, 0.95),
            "latency_ratio_p50": round(p50_on / p50_off, 4) if p50_on and p50_off else None,
            "pyspy_cpu_pct_while_on": round(100 * out["pyspy_cpu_s"] / max(busy_s, 1e-9), 2)}


def _in_intervals(ts: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    """For sorted, disjoint intervals: whether each ts falls inside one."""
    starts = np.array([s for s, _ in intervals])
    ends = np.array([e for _, e in intervals])
    idx = np.searchsorted(starts, ts, side="right") - 1
    return (idx >= 0) & (ts < ends[np.clip(idx, 0, None)])
