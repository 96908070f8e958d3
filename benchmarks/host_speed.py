"""How steady is this host's CPU speed, and how much of the shop's A/A floor does it explain?

    .venv/bin/python benchmarks/host_speed.py [--idle-s 60] [--shop-windows 8] [--json PATH]

A probe times a fixed piece of pure-Python work (20,000 multiply-adds) in thread CPU time,
every 50 ms, pinned to one CPU: scheduling cannot lengthen it, only a slower CPU can. Three
measurements, each in this one run (nothing else should be running):

1. **Idle**: a probe on each CPU for ``--idle-s`` seconds. Its times are split in two by the
   largest gap of their log (two modes, when there are two); printed per CPU: the fast and
   slow modes' medians, their ratio, the share of 1 s blocks whose median is in the slow mode
   and the median run of consecutive blocks in one mode (how long a state lasts).
2. **Duty**: the probe on CPU 0 while another process on CPU 0 is busy 0, 25, 60 and 90 % of
   every 10 ms: the probe's median at each duty over its median alone. A host whose
   frequency follows its guest's load makes a busier CPU faster.
3. **Shop** (``--shop-windows`` > 0): the e-commerce reference target, set up and started as a
   run does, measured in that many agent-free A/A windows with probes on every study CPU; the
   p95 noise floor (``tasks/analysis/noise.py``) from the raw latencies, and from latencies
   divided by the host's speed at their time (the probes' mean time within +-1 s, relative
   to its median over the windows), and with the windows' mean slowness regressed out of their
   log p95 (one slope for all windows; its residual variance beyond sampling is the between
   part left). The adjusted floors are not what a decision could use: the
   probe's own reading follows the load on its CPU (part 2), so a change that alters the
   target's CPU use would move it. It says how much of the floor the host's speed explains.

Prints a JSON summary ``{"idle": {cpu: {...}}, "duty": {...}, "shop": {...}}`` (also written to
``--json PATH``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_HOME", str(REPO / ".perfagents" / "prefect"))  # as `make` sets it

SHOP = REPO / "reference_workflows" / "ecommerce" / "target.yaml"
PROBE_EVERY_S = 0.05
SPEED_HALF_S = 1.0  # a request's host speed: the probes' mean time within this many seconds of it
DUTIES = (0.0, 0.25, 0.6, 0.9)
DUTY_S = 12.0
RUN_ALL_TIMEOUT_S = 480  # benchmarks/run_all.py: about 5.5 minutes with the defaults

PROBE = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end = time.time() + float(sys.argv[2])
with open(sys.argv[3], "w") as out:
    while time.time() < end:
        t = time.thread_time_ns()
        s = 0
        for i in range(20000):
            s += i * i
        out.write(f"{time.time():.3f}\\t{(time.thread_time_ns() - t) / 1e6:.4f}\\n")
        out.flush()
        time.sleep(float(sys.argv[4]))
"""

BUSY = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
duty, end = float(sys.argv[2]), time.time() + float(sys.argv[3])
while time.time() < end:
    t = time.perf_counter()
    while time.perf_counter() - t < 0.01 * duty:
        pass
    time.sleep(0.01 * (1 - duty))
"""


def start_probe(cpu: int, seconds: float, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", PROBE, str(cpu), str(seconds), str(path), str(PROBE_EVERY_S)])


def read_probe(path: Path) -> np.ndarray:
    """(time, probe ms) rows; empty when the probe wrote nothing."""
    rows = np.loadtxt(path, ndmin=2) if path.exists() and path.stat().st_size else np.empty((0, 2))
    return rows.reshape(-1, 2)


def modes(rows: np.ndarray) -> dict[str, Any]:
    """The probe's fast and slow modes (split at the largest gap of its log times, between the
    5th and 95th percentiles), with the share and runs of 1 s blocks in the slow mode."""
    times = rows[:, 1]
    logs = np.sort(np.log(times))
    lo, hi = int(0.05 * logs.size), int(0.95 * logs.size)
    gaps = np.diff(logs[lo:hi])
    cut = float(np.exp(logs[lo + int(np.argmax(gaps))] + gaps.max() / 2)) if gaps.size else float(np.median(times))
    fast, slow = times[times <= cut], times[times > cut]
    seconds = np.floor(rows[:, 0] - rows[0, 0]).astype(int)
    blocks = np.array([np.median(times[seconds == s]) for s in np.unique(seconds)])
    slow_blocks = blocks > cut
    runs = [len(list(run)) for _, run in itertools.groupby(slow_blocks.tolist())]
    return {"probes": int(times.size), "fast_ms": round(float(np.median(fast)), 3) if fast.size else None,
            "slow_ms": round(float(np.median(slow)), 3) if slow.size else None,
            "slow_over_fast": round(float(np.median(slow) / np.median(fast)), 3) if fast.size and slow.size else None,
            "slow_block_share": round(float(slow_blocks.mean()), 3), "state_run_s_median": float(np.median(runs))}


def idle(cpus: list[int], seconds: float, folder: Path) -> dict[str, Any]:
    probes = {cpu: start_probe(cpu, seconds, folder / f"idle-{cpu}.tsv") for cpu in cpus}
    for proc in probes.values():
        proc.wait(timeout=seconds + 30)
    return {str(cpu): modes(read_probe(folder / f"idle-{cpu}.tsv")) for cpu in cpus}


def duty(cpu: int, folder: Path) -> dict[str, Any]:
    medians = {}
    for share in DUTIES:
        busy = subprocess.Popen([sys.executable, "-c", BUSY, str(cpu), str(share), str(DUTY_S + 1)])
        try:
            time.sleep(0.5)
            path = folder / f"duty-{share}.tsv"
            start_probe(cpu, DUTY_S, path).wait(timeout=DUTY_S + 30)
            medians[share] = float(np.median(read_probe(path)[:, 1]))
        finally:
            busy.kill()
            busy.wait(timeout=10)
    alone = medians[0.0]
    return {f"{share:.2f}": {"probe_ms": round(ms, 3), "over_alone": round(ms / alone, 3)} for share, ms in medians.items()}


def host_speed(rows: list[np.ndarray], at: np.ndarray) -> np.ndarray:
    """The host's relative slowness at each time: the mean over CPUs of the probes' mean time
    within SPEED_HALF_S, each over its CPU's median (1.0 where a CPU's probe has no reading)."""
    factors = []
    for probe in rows:
        t, ms = probe[:, 0], probe[:, 1]
        cumulative = np.concatenate([[0.0], np.cumsum(ms)])
        lo, hi = np.searchsorted(t, at - SPEED_HALF_S), np.searchsorted(t, at + SPEED_HALF_S)
        count = hi - lo
        mean = np.where(count > 0, (cumulative[hi] - cumulative[lo]) / np.maximum(count, 1), np.nan)
        factors.append(np.where(np.isnan(mean), 1.0, mean / np.median(ms)))
    return np.mean(factors, axis=0)


def shop(n_windows: int, folder: Path) -> dict[str, Any]:
    import polars as pl

    from tasks import loop
    from tasks.analysis.noise import Z95, estimate_noise
    from tasks.request import RunRequest, resolve_request
    from tasks.run import open_run

    request = resolve_request(RunRequest(target=str(SHOP), budget_constraints="minutes=12,iterations=1",
                                         store=str(folder / "shop.duckdb")))
    cpus = sorted(os.sched_getaffinity(0))
    windows: list[pl.DataFrame] = []
    with open_run(request, flow="host-speed-benchmark") as run:
        run.agents = []
        window_s = run.spec.load.warmup_s + run.spec.load.duration_s
        seconds = n_windows * (window_s + 10) + 60
        probes = [start_probe(cpu, seconds, folder / f"shop-{cpu}.tsv") for cpu in cpus]
        try:
            for attempt in range(1, 2 * n_windows + 1):  # a window the gate rejects is measured again
                if len(windows) == n_windows:
                    break
                window = loop.measure(run, f"aa-{attempt}")
                if window.valid:
                    windows.append(window.samples)
                print(f"shop window {len(windows)}: valid {window.valid}, foreign cores {window.foreign_cores}", flush=True)
        finally:
            for proc in probes:
                proc.kill()
                proc.wait(timeout=10)
    rows = [read_probe(folder / f"shop-{cpu}.tsv") for cpu in cpus]
    adjusted = []
    for samples in windows:
        speed = host_speed(rows, samples.get_column("ts").to_numpy())
        adjusted.append(samples.with_columns(pl.col("latency_ms") / pl.Series(speed)))
    raw, steady = estimate_noise(windows), estimate_noise(adjusted)
    slowness = np.log([float(np.mean(host_speed(rows, w.get_column("ts").to_numpy()))) for w in windows])
    logs = np.log(raw.p95s)
    slope, intercept = np.polyfit(slowness, logs, 1)
    residual_var = float(np.sum((logs - intercept - slope * slowness) ** 2)) / max(1, len(logs) - 2)
    within_sd = math.log1p(raw.within_rel) / (Z95 * math.sqrt(2.0))
    between_left = math.sqrt(max(0.0, residual_var - within_sd ** 2))
    regressed = math.exp(Z95 * math.sqrt(2.0) * math.sqrt(between_left ** 2 + within_sd ** 2)) - 1.0
    return {"windows": len(windows), "floor_raw": raw.noise_rel, "floor_speed_adjusted": steady.noise_rel,
            "floor_slowness_regressed": round(regressed, 4),
            "between_raw": raw.between_rel, "between_speed_adjusted": steady.between_rel,
            "within_raw": raw.within_rel, "within_speed_adjusted": steady.within_rel,
            "p95_ms_raw": raw.p95s, "p95_ms_speed_adjusted": steady.p95s,
            "window_slowness": [round(float(np.exp(v)), 3) for v in slowness],
            "slope_log_p95_on_log_slowness": round(float(slope), 3),
            "r_log_p95_slowness": round(float(np.corrcoef(logs, slowness)[0, 1]), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--shop-windows", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.idle_s < 5 or args.shop_windows < 0 or 0 < args.shop_windows < 2:
        parser.error("--idle-s must be >= 5 and --shop-windows 0 or >= 2")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run_all's timeout: stop the target on the way out
    started = time.monotonic()
    cpus = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="perfagents-host-speed-") as tmp:
        folder = Path(tmp)
        summary: dict[str, Any] = {"idle": idle(cpus, args.idle_s, folder)}
        print("idle:", json.dumps(summary["idle"]), flush=True)
        summary["duty"] = duty(cpus[0], folder)
        print(f"duty on CPU {cpus[0]}:", json.dumps(summary["duty"]), flush=True)
        if args.shop_windows:
            summary["shop"] = shop(args.shop_windows, folder)
    summary["wall_s"] = round(time.monotonic() - started)
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
