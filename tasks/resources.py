"""Resource usage of a process tree over time (psutil), as a polars frame.

One ``ProcessTreeSampler`` per role (``loadgen``, ``target`` ...) samples, every
``interval_s``, the processes its ``pids`` callable names *now*: processes may appear and
vanish between samples. CPU is computed from cpu_times deltas per pid, so a process born
during an interval counts from its birth and one that vanished simply stops counting.
Sampling a tree every 0.5 s costs about 0.7% of a core (DESIGN.md).
"""

from __future__ import annotations

import math
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


def _own_pids(extra: list[int]) -> set[int]:
    """This process, its descendants, and the ``extra`` processes with theirs (an attached
    target's tree, its database server, the Prefect API server)."""
    me = psutil.Process()
    roots = [me]
    for pid in extra:
        try:
            roots.append(psutil.Process(pid))
        except _GONE:
            pass
    pids: set[int] = set()
    for root in roots:
        pids.add(root.pid)
        try:
            pids.update(c.pid for c in root.children(recursive=True))
        except _GONE:
            pass
    return pids


def _foreign_cpu(own: set[int], cpus: frozenset[int] | None = None) -> dict[tuple[int, float], float]:
    """CPU seconds so far of every process that is not ours, keyed by (pid, start time).

    Each process's own time only: what a parent reaps lands in its counters at once, a whole
    lifetime in one step (a shell that reaps a long test run), so children's times would
    put hours of earlier work into one window. Kernel threads are left out: the loopback
    traffic and page faults our own windows cause are charged to them. With ``cpus`` (the
    study's own CPUs, tasks/target/study_cpus.py) a process that may not run on any of them
    (another study, pinned to its own) is left out too: it takes no CPU time from us.
    """
    out: dict[tuple[int, float], float] = {}
    attrs = ["pid", "ppid", "create_time", *(["cpu_affinity"] if cpus is not None else [])]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        if info["pid"] in own or info["pid"] in (0, 2) or info["ppid"] == 2:
            continue
        if cpus is not None and info.get("cpu_affinity") and cpus.isdisjoint(info["cpu_affinity"]):
            continue
        try:
            c = proc.cpu_times()
        except _GONE:
            continue
        out[(info["pid"], info["create_time"] or 0.0)] = c.user + c.system
    return out


def _stolen_s(cpus: frozenset[int] | None = None) -> float:
    """CPU seconds so far that the hypervisor gave to other guests while ours wanted to run
    (``steal`` in /proc/stat), over ``cpus`` (all when None); 0 where the kernel does not say."""
    per_cpu = psutil.cpu_times(percpu=True)
    return float(sum(getattr(t, "steal", 0.0) for i, t in enumerate(per_cpu) if cpus is None or i in cpus))


class ForeignCpuMeter:
    """Cores used over an interval by processes outside this process tree (outside load).

    The toolkit, the target it started, the load generator and the agents' helpers are all
    descendants of this process; ``extra_pids`` names what the window measures that is not (an
    attached target, the target's database server, the Prefect API server). A thread reads
    every other process's CPU time each ``sample_s``; the foreign CPU is, per process, its last
    reading minus its first (all of it for a process started inside the interval).

    Counting what others used, rather than the machine's busy time minus ours, matters: our own
    short-lived helpers (py-spy bursts, Chromium's renderers) drop out of our counters when they
    exit and their reaper is gone, and loopback traffic is charged to no process. With that
    subtraction, four Chromium page loads read as 1.3-1.6 foreign cores here, and every
    profiling window of the shop was rejected. What this misses: an outside process's last
    ``sample_s`` before it exits, and processes shorter than that.

    On a virtual machine the host's other guests are outside load too, invisible to any process
    list: the CPU time stolen from this guest meanwhile (``steal``) is added. Here it was
    0.6 % of the machine's CPU over its first 6 hours up, and 2.5 s in the 1.5 hours after.
    """

    def __init__(self, extra_pids: Callable[[], list[int]] | None = None, sample_s: float = 1.0,
                 cpus: frozenset[int] | None = None) -> None:
        self._extra = extra_pids or (lambda: [])
        self._cpus = cpus
        self._sample_s = sample_s
        self._first: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._t0 = math.nan
        self._t0_epoch = 0.0
        self._stolen0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self, first: bool = False) -> None:
        try:
            extra = list(self._extra())
        except Exception:  # naming the extra processes must never fail a window
            extra = []
        for key, cpu_s in _foreign_cpu(_own_pids(extra), self._cpus).items():
            if key not in self._first:
                # first seen later: from zero if it started inside the interval (1 s for
                # create_time's rounding), else (it was ours until now) from this reading
                started_inside = not first and key[1] >= self._t0_epoch - 1.0
                self._first[key] = 0.0 if started_inside else cpu_s
            self._last[key] = cpu_s

    def _loop(self) -> None:
        while not self._stop.wait(self._sample_s):
            try:
                self._read()
            except Exception:  # a failed reading loses one sample, never the window
                pass

    def start(self) -> ForeignCpuMeter:
        self._t0, self._t0_epoch = time.monotonic(), time.time()
        self._stolen0 = _stolen_s(self._cpus)
        self._read(first=True)
        self._thread = threading.Thread(target=self._loop, name="foreign-cpu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        if self._thread is None:
            return math.nan
        self._stop.set()
        self._thread.join(timeout=5)
        self._read()
        elapsed = time.monotonic() - self._t0
        foreign = sum(max(0.0, last - self._first[key]) for key, last in self._last.items())
        foreign += max(0.0, _stolen_s(self._cpus) - self._stolen0)
        return round(foreign / elapsed, 3) if elapsed > 0 else math.nan
