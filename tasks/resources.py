"""Resource usage of a process tree over time (psutil), as a polars frame.

One ``ProcessTreeSampler`` per role (``loadgen``, ``target`` ...) samples, every
``interval_s``, the processes its ``pids`` callable names *now*: processes may appear and
vanish between samples. CPU is computed from cpu_times deltas per pid, so a process born
during an interval counts from its birth and one that vanished simply stops counting.
Sampling a tree every 0.5 s costs about 0.7% of a core (DESIGN.md).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import polars as pl
import psutil

SAMPLE_INTERVAL_S = 0.5
JOIN_TIMEOUT_S = 5.0

RESOURCE_SCHEMA: dict[str, Any] = {
    "ts": pl.Float64,  # epoch seconds, end of the interval the cpu_pct covers
    "role": pl.Utf8,
    "pids": pl.Int32,  # processes alive in the tree at ts
    "cpu_pct": pl.Float64,  # sum over the tree, percent of one core
    "rss_bytes": pl.Int64,
    "threads": pl.Int32,
    "ctx_switches": pl.Int64,  # voluntary + involuntary, cumulative over the live processes
    "open_files": pl.Int32,  # file descriptors (files, sockets, pipes)
}

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now (zombies excluded); [] when ``pid`` is gone."""
    try:
        root = psutil.Process(pid)
        if root.status() == psutil.STATUS_ZOMBIE:
            return []
        children = root.children(recursive=True)
    except _GONE:
        return []
    return [pid, *(child.pid for child in children if _alive(child))]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except _GONE:
        return False


def empty_resources() -> pl.DataFrame:
    return pl.DataFrame(schema=RESOURCE_SCHEMA)


class ProcessTreeSampler:
    """Sample a process tree on a daemon thread: ``start()``, ``stop()``, ``frame()``."""

    def __init__(self, pids: Callable[[], list[int]], role: str, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.pids = pids
        self.role = role
        self.interval_s = interval_s
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_s: dict[int, float] = {}  # pid -> user+system seconds at the last sample
        self._last_mono: float | None = None
        self._last_wall: float | None = None
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ProcessTreeSampler:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._stop.clear()
        self.sample(record=False)  # baseline: cpu deltas need a previous reading
        self._thread = threading.Thread(target=self._loop, name=f"sampler-{self.role}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> pl.DataFrame:
        """Stop the thread, take a last sample, and return the frame."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None
            try:
                self.sample()
            except Exception:  # the tree may be unreadable by now; keep what was sampled
                pass
        return self.frame()

    def __enter__(self) -> ProcessTreeSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # a broken pids callable must not kill the thread silently mid-run
                continue

    # -- sampling --------------------------------------------------------------------------
    def sample(self, *, record: bool = True) -> dict[str, Any] | None:
        """Read the tree once; append (and return) a row unless ``record`` is False."""
        with self._lock:
            return self._sample_locked(record)

    def _sample_locked(self, record: bool) -> dict[str, Any] | None:
        now_mono, now_wall = time.monotonic(), time.time()
        prev_wall = self._last_wall
        alive = set(self.pids())
        cpu_delta = rss = threads = ctx = fds = count = 0
        cpu_now: dict[int, float] = {}
        for pid in alive:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.ZombieProcess(pid)
                    times = proc.cpu_times()
                    mem = proc.memory_info()
                    switches = proc.num_ctx_switches()
                    nthreads = proc.num_threads()
                    nfds = proc.num_fds()
                    born = proc.create_time()
            except _GONE:
                self._procs.pop(pid, None)
                continue
            used = times.user + times.system
            cpu_now[pid] = used
            if pid in self._cpu_s:
                cpu_delta += max(0.0, used - self._cpu_s[pid])
            elif prev_wall is not None and born >= prev_wall:
                cpu_delta += used  # born during this interval: all its CPU is new
            count += 1
            rss += mem.rss
            threads += nthreads
            ctx += switches.voluntary + switches.involuntary
            fds += nfds
        for pid in list(self._procs):
            if pid not in cpu_now:
                del self._procs[pid]
        elapsed = now_mono - self._last_mono if self._last_mono is not None else 0.0
        self._cpu_s, self._last_mono, self._last_wall = cpu_now, now_mono, now_wall
        if not record or elapsed <= 0 or count == 0:  # nothing alive: a gap, not a zero
            return None
        row = {
            "ts": now_wall,
            "role": self.role,
            "pids": count,
            "cpu_pct": 100.0 * cpu_delta / elapsed,
            "rss_bytes": rss,
            "threads": threads,
            "ctx_switches": ctx,
            "open_files": fds,
        }
        self._rows.append(row)
        return row

    def frame(self) -> pl.DataFrame:
        with self._lock:
            rows = list(self._rows)
        if not rows:
            return empty_resources()
        return pl.DataFrame(rows, schema=RESOURCE_SCHEMA)


def _own_cpu_s(extra: list[int]) -> float:
    """CPU seconds of this process and every descendant, alive or already reaped, and of the
    ``extra`` processes (the target's tree and its database server when we did not start them)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    try:
        children = psutil.Process().children(recursive=True)
    except _GONE:
        children = []
    pids = {c.pid for c in children}
    for pid in extra:
        if pid not in pids and pid != os.getpid():
            try:
                children.append(psutil.Process(pid))
                pids.add(pid)
            except _GONE:
                pass
    for child in children:
        try:
            c = child.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
        except _GONE:
            pass
    return total


def _busy_cpu_s() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


class ForeignCpuMeter:
    """Cores used over an interval by processes outside this process tree (outside load).

    The toolkit, the target it started, the load generator and the agents' helpers are all
    descendants of this process; ``extra_pids`` names what the window measures that is not (an
    attached target, the target's database server). Whatever else kept the CPUs busy disturbed
    the window.
    """

    def __init__(self, extra_pids: Callable[[], list[int]] | None = None) -> None:
        self._start: tuple[float, float, float] | None = None
        self._extra = extra_pids or (lambda: [])
        self._pids: list[int] = []

    def _own(self) -> float:
        try:
            self._pids = sorted({*self._pids, *self._extra()})
        except Exception:  # naming the extra processes must never fail a window
            pass
        return _own_cpu_s(self._pids)

    def start(self) -> ForeignCpuMeter:
        self._start = (time.monotonic(), _busy_cpu_s(), self._own())
        return self

    def stop(self) -> float:
        if self._start is None:
            return math.nan
        t0, busy0, own0 = self._start
        elapsed = time.monotonic() - t0
        foreign = (_busy_cpu_s() - busy0) - (self._own() - own0)
        return round(max(0.0, foreign) / elapsed, 3) if elapsed > 0 else math.nan
