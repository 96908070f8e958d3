"""The target's process tree as psutil saw it: CPU saturation and memory growth.

The series comes from ``tasks.resources.ProcessTreeSampler`` (the same sampler the window
uses for the ``resources`` table); only rows inside the measured part of the window count.
Two readings of the kernel's schedstat (after the warm-up, at the window's end) add the time
the tree sat runnable waiting for a core: on a shared 2-core machine a CPU-bound target often
gets less CPU than it asks for, and is saturated all the same.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
import psutil
from scipy import stats

from tasks.findings import Candidate, Finding, Severity
from tasks.resources import RESOURCE_SCHEMA
from tasks.spec import IntKnob, TargetSpec

AGENT = "application"
CPU_SATURATION_SHARE = 0.85  # mean CPU above this share of the usable cores: saturated
CPU_SATURATION_HIGH = 0.95
BUSY_PROCESS_PCT = 10.0  # a process that used more than this (% of a core) serves requests
WORKER_KNOB = re.compile(r"worker|process", re.I)
MIN_SERIES_POINTS = 8
MEMORY_MAX_P = 0.01  # the slope must be this significant ...
MEMORY_MIN_R2 = 0.6  # ... steady ...
MEMORY_MIN_GROWTH_MB = 5.0  # ... and large: at least this many MB over the window ...
MEMORY_MIN_GROWTH_SHARE = 0.05  # ... and this share of the starting RSS
MEMORY_LATE_PACE = 0.5  # ... and still rising in the window's second half at half the pace or more
MEMORY_LATE_MAX_P = 0.05
MEMORY_MAX_JUMP_SHARE = 1 / 3  # ... spread over the window: no one sample-to-sample rise is this share of it
MEMORY_MEDIUM_SHARE = 0.10  # severity by the window's growth as a share of the starting RSS
# a window shorter than this cannot tell a small leak from a cache or pool warming up: the shop's
# SQLite page caches (one per thread's connection) grew 5 MB (7.7%) over a 12.6 s window, and in
# two fresh-clone CI runs 8.4 MB (13.7%) in steps of 1-2 MB, then 9 MB more in the next window.
# There, growth must reach MEMORY_SHORT_SHARE to count
MEMORY_SURE_SPAN_S = 60.0
MEMORY_SHORT_SHARE = 0.20
MEMORY_HIGH_SHARE = 0.25
SERIES_COLUMNS = [c for c in RESOURCE_SCHEMA if c != "role"]
MB = 1024 * 1024


def cpu_seconds_by_pid(pids: list[int]) -> dict[int, float]:
    """User+system CPU seconds of each live process now."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        out[pid] = times.user + times.system
    return out


def busy_processes(before: dict[int, float], after: dict[int, float], elapsed_s: float) -> dict[str, float]:
    """Processes that used more than BUSY_PROCESS_PCT of a core between two readings."""
    if elapsed_s <= 0:
        return {}
    used = {pid: 100 * (cpu - before.get(pid, 0.0)) / elapsed_s for pid, cpu in after.items()}
    return {str(pid): round(pct, 1) for pid, pct in used.items() if pct >= BUSY_PROCESS_PCT}


def sched_times(pids: list[int]) -> dict[str, tuple[float, float]]:
    """Per thread: seconds on a CPU and seconds runnable but waiting for one (Linux schedstat)."""
    out: dict[str, tuple[float, float]] = {}
    for pid in pids:
        try:
            tasks_dir = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks_dir:
            try:
                run_ns, wait_ns, *_ = (int(x) for x in (task / "schedstat").read_text().split())
            except (OSError, ValueError):
                continue
            out[f"{pid}/{task.name}"] = (run_ns / 1e9, wait_ns / 1e9)
    return out


def cpu_demand(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
               elapsed_s: float) -> dict[str, float] | None:
    """On-CPU and run-queue-wait time of the tree between two readings, in % of one core.

    On-CPU plus waiting is what the target asked for: a CPU-bound target on a shared machine
    gets less than it wants, and the difference shows here, not in its CPU share.
    """
    if elapsed_s <= 0 or not after:
        return None
    run = wait = 0.0
    for key, (r, w) in after.items():
        r0, w0 = before.get(key, (0.0, 0.0))
        run, wait = run + max(0.0, r - r0), wait + max(0.0, w - w0)
    return {"on_cpu_pct": round(100 * run / elapsed_s, 1), "runqueue_wait_pct": round(100 * wait / elapsed_s, 1),
            "demand_pct": round(100 * (run + wait) / elapsed_s, 1), "elapsed_s": round(elapsed_s, 2)}


def machine_cores(pids: list[int]) -> int:
    """CPUs the target may run on (its affinity), else the machine's."""
    for pid in pids[:1]:
        try:
            return len(psutil.Process(pid).cpu_affinity())
        except (psutil.Error, AttributeError):
            break
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def series_dict(frame: pl.DataFrame) -> dict[str, list[Any]]:
    """The psutil series as JSON-friendly columns."""
    frame = frame.select(SERIES_COLUMNS).with_columns(pl.col("ts").round(3), pl.col("cpu_pct").round(1))
    return {c: frame[c].to_list() for c in SERIES_COLUMNS}


def series_frame(series: dict[str, list[Any]] | None) -> pl.DataFrame:
    if not series or not series.get("ts"):
        return pl.DataFrame(schema={c: RESOURCE_SCHEMA[c] for c in SERIES_COLUMNS})
    return pl.DataFrame(series, schema={c: RESOURCE_SCHEMA[c] for c in SERIES_COLUMNS})


def measured_part(series: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """Rows of the series inside the window's measured part (first to last request)."""
    if samples.height < 2 or series.height == 0:
        return series
    first, last = float(cast(float, samples["ts"].min())), float(cast(float, samples["ts"].max()))
    return series.filter((pl.col("ts") > first) & (pl.col("ts") <= last + 1.0))


def worker_knob(spec: TargetSpec, config: dict[str, Any]) -> tuple[str, IntKnob, int] | None:
    """An int knob that sets the number of worker processes, with its value now."""
    for name, knob in spec.knobs.items():
        env = getattr(knob.apply, "env", "") or ""
        if isinstance(knob, IntKnob) and (WORKER_KNOB.search(name) or WORKER_KNOB.search(env)):
            return name, knob, int(config.get(name, knob.default))
    return None


def find_cpu_saturation(spec: TargetSpec, config: dict[str, Any], observed: dict[str, Any],
                        samples: pl.DataFrame) -> Finding | None:
    """CPU of the tree near what its workers (or the machine's cores) can use."""
    cpu = measured_part(series_frame(observed.get("resources")), samples)["cpu_pct"].drop_nulls()
    if cpu.len() < MIN_SERIES_POINTS // 2:
        return None
    cores = int(observed.get("cores") or 1)
    busy = observed.get("busy_processes") or {}
    knob = worker_knob(spec, config)
    workers = knob[2] if knob else max(1, len(busy))
    usable = max(1, min(cores, workers))
    mean = float(cast(float, cpu.mean()))
    demand = observed.get("cpu_demand") or {}
    share = mean / (100 * usable)
    demand_share = float(demand.get("demand_pct") or 0.0) / (100 * usable)
    if max(share, demand_share) < CPU_SATURATION_SHARE:
        return None
    evidence = {"cpu_pct_mean": round(mean, 1), "cpu_pct_p90": round(float(cast(float, cpu.quantile(0.9))), 1),
                "cpu_pct_max": round(float(cast(float, cpu.max())), 1), "points": cpu.len(), "cores": cores,
                "workers": workers, "workers_from": f"knob {knob[0]}" if knob else "busy processes",
                "busy_processes_pct": busy, "usable_cores": usable, "share_of_usable": round(share, 3),
                "demand": demand or None, "demand_share_of_usable": round(demand_share, 3),
                "threshold": CPU_SATURATION_SHARE}
    if demand_share >= CPU_SATURATION_SHARE > share:
        evidence["note"] = ("CPU-bound but starved: runnable and waiting for a core "
                            f"{demand.get('runqueue_wait_pct')}% of the time (other processes compete)")
    candidate = None
    if knob is not None:
        name, spec_knob, current = knob
        new = current + spec_knob.step
        if new <= spec_knob.high and current < cores:
            gain = round(min(0.5, 1 - current / min(new, cores)), 3)
            candidate = Candidate("set_knob", {"knob": name, "value": new},
                                  f"add a worker process ({name}: {current} -> {new}); the tree uses "
                                  f"{mean:.0f}% CPU of {usable} usable core(s)", risk="low", expected_gain=gain)
    severity: Severity = "high" if max(share, demand_share) >= CPU_SATURATION_HIGH else "medium"
    return Finding(AGENT, "cpu_saturation", f"target:{spec.name}", severity, evidence,
                   {"share_of_usable_cores": round(share, 3), "demand_share_of_usable_cores": round(demand_share, 3)},
                   candidate=candidate)


def find_memory_growth(spec: TargetSpec, observed: dict[str, Any], samples: pl.DataFrame) -> Finding | None:
    """RSS that grows steadily over the window (a significant, steady, large linear trend that
    keeps its pace in the second half: warm-up growth flattens, a leak does not)."""
    part = measured_part(series_frame(observed.get("resources")), samples).drop_nulls("rss_bytes")
    if part.height < MIN_SERIES_POINTS:
        return None
    t = part["ts"].to_numpy() - float(part["ts"][0])
    rss_mb = part["rss_bytes"].to_numpy() / MB
    if np.ptp(t) <= 0 or np.ptp(rss_mb) <= 0:
        return None
    fit = stats.linregress(t, rss_mb)
    # the growth at the robust (Theil-Sen) slope, the median of all pairwise slopes: a cache that
    # fills in one jump late in a short window gives least squares a steep, well-fitting line
    # (CI: the shop's 12 s window), but moves the median of the pairs little; a leak moves both
    robust_slope = float(stats.theilslopes(rss_mb, t).slope)
    growth_mb = min(fit.slope, robust_slope) * float(np.ptp(t))
    r2 = fit.rvalue ** 2
    if (fit.slope <= 0 or fit.pvalue >= MEMORY_MAX_P or r2 < MEMORY_MIN_R2
            or growth_mb < max(MEMORY_MIN_GROWTH_MB, MEMORY_MIN_GROWTH_SHARE * rss_mb[0])):
        return None
    if np.ptp(t) < MEMORY_SURE_SPAN_S and growth_mb < MEMORY_SHORT_SHARE * rss_mb[0]:
        return None
    if float(np.diff(rss_mb).max()) > MEMORY_MAX_JUMP_SHARE * growth_mb:
        return None  # one jump: a cache or buffer filled at once, not a steady leak
    late = t >= float(np.ptp(t)) / 2  # a leak keeps its pace; a warming cache or pool slows down
    if late.sum() >= MIN_SERIES_POINTS // 2 and np.ptp(t[late]) > 0:
        late_fit = stats.linregress(t[late], rss_mb[late])
        if late_fit.slope < MEMORY_LATE_PACE * fit.slope or late_fit.pvalue >= MEMORY_LATE_MAX_P:
            return None
    per_min = fit.slope * 60
    evidence = {"slope_mb_per_min": round(per_min, 2), "robust_slope_mb_per_min": round(robust_slope * 60, 2), "r2": round(r2, 3), "p_value": float(f"{fit.pvalue:.3g}"),
                "rss_start_mb": round(float(rss_mb[0]), 1), "rss_end_mb": round(float(rss_mb[-1]), 1),
                "growth_mb": round(growth_mb, 1), "span_s": round(float(np.ptp(t)), 1), "points": part.height,
                "threads": [int(part["threads"][0]), int(part["threads"][-1])],
                "open_files": [int(part["open_files"][0]), int(part["open_files"][-1])]}
    # what the window showed, not an hourly extrapolation: caches warming up also rise steadily for a while
    share = growth_mb / float(rss_mb[0])
    evidence["growth_share"] = round(share, 3)
    severity: Severity = "high" if share >= MEMORY_HIGH_SHARE else "medium" if share >= MEMORY_MEDIUM_SHARE else "low"
    return Finding(AGENT, "memory_growth", f"target:{spec.name}", severity, evidence,
                   {"mb_per_hour": round(per_min * 60, 1)})
