"""How well ``perfagents regressions`` finds steps in signature histories built from real A/A windows.

    .venv/bin/python benchmarks/changepoints.py [--json PATH] [--windows 18] [--per-run 3]
    .venv/bin/python benchmarks/changepoints.py --store PATH --target NAME   # an existing store's A/A windows

By default it measures its own A/A windows on the e-commerce reference shop with the real runner
(``tasks.window.measure_window``: Locust subprocess, the gate, the store), restarting the target
every ``--per-run`` windows so that the pool holds run-to-run variation as well as window-to-window
noise, and labels them ``baseline-N`` in a temporary store (the windows ``perfagents regressions``
calibrates on). With ``--store`` it reads an existing store's baseline A/A windows instead.

Then, per endpoint with windows in every run (and the total), it builds histories of RUNS runs:
each run's signature is the geometric mean of K windows drawn from one real run (drawn at
random), as a signature summarises its run's windows. A step of 5%, 10% or 20% is injected into
the p95 from a random run on; SERIES histories per step size, and SERIES without a step. Two
detectors judge each history: ours (tasks/analysis/changepoints.py: binary segmentation,
threshold and false-alarm rate from the pool's A/A window deviations and between-run shifts; an alarm is a confirmed
regression) and a plain one (Welch's t-test at every split, p < 0.05, no correction). Both alarm
only on a rise of more than MIN_STEP. A hit is an alarm within one run of the injected step;
precision = hits / alarms and recall = histories with a hit / histories, per step size; false
alarms per 100 = histories without a step that raised an alarm, per 100 histories.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._aa import measure_aa  # noqa: E402
from tasks.analysis.changepoints import (  # noqa: E402
    MIN_STEP,
    aa_deviations,
    aa_shifts,
    build_null,
    detect,
    t_test_detect,
)
from tasks.store import Store  # noqa: E402

STEPS = (0.05, 0.10, 0.20)
RUNS = 12  # runs in a history
K = 3  # windows a run's signature summarises
SERIES = 150  # histories per step size (and without a step), per endpoint pool
WINDOWS = 18
PER_RUN = 3
WINDOW_S = 6.0
WARMUP_S = 2.0
METRIC = "p95_ms"
MIN_POOL_RUNS = 3
SEED = 17
RUN_ALL_TIMEOUT_S = 600  # measuring the A/A windows takes ~4 min, the simulation ~1.5 min


def stored_aa(paths: list[Path], target: str | None) -> tuple[list[dict[str, Any]], str]:
    """The baseline A/A windows of existing stores, each window once, of the load shape
    (window length, users) that has the most of them: windows measured another way differ."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        with Store(path, read_only=True) as store:
            for r in store.aa_window_stats(target):
                seen.setdefault((r["window_id"], r["endpoint"]), r)
    shapes: dict[tuple[float, int], set[str]] = defaultdict(set)
    for r in seen.values():
        shapes[(round(float(r["duration_s"]), 1), int(r["users"] or 0))].add(r["window_id"])
    if not shapes:
        return [], f"existing stores ({len(paths)}): no baseline A/A windows"
    shape = max(shapes, key=lambda k: len(shapes[k]))
    rows = [r for r in seen.values() if (round(float(r["duration_s"]), 1), int(r["users"] or 0)) == shape]
    return rows, (f"existing stores ({len(paths)}): {len(shapes[shape])} baseline A/A windows of {shape[0]:g} s with "
                  f"{shape[1]} users in {len({r['run_id'] for r in rows})} runs"
                  f"{' of ' + target if target else ''}")


def pools(rows: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """Per endpoint: the p95 of each valid A/A window, grouped by run (runs with >= 2 windows)."""
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r[METRIC] is not None and r[METRIC] > 0:
            by[r["endpoint"]][r["run_id"]].append(float(r[METRIC]))
    out = {}
    for endpoint, runs in by.items():
        groups = [v for v in runs.values() if len(v) >= 2]
        if len(groups) >= MIN_POOL_RUNS:
            out[endpoint] = groups
    return out


def history(groups: list[list[float]], step_at: int | None, step: float, rng: np.random.Generator) -> list[float]:
    values = []
    for i in range(RUNS):
        run = np.log(groups[rng.integers(len(groups))])
        value = math.exp(float(run[rng.integers(0, run.size, K)].mean()))
        values.append(value * (1 + step) if step_at is not None and i >= step_at else value)
    return values


def ours(values: list[float], deviations: np.ndarray, shifts: np.ndarray, seed: int) -> list[int]:
    null = build_null(np.log(values), deviations, K, shifts)
    assert null is not None
    return [cp.index for cp in detect(values, null, seed=seed) if cp.regression and cp.confirmed]


def plain(values: list[float]) -> list[int]:
    cp = t_test_detect(values)
    if cp is None:
        return []
    x = np.log(values)
    return [cp] if float(x[cp:].mean() - x[:cp].mean()) > math.log1p(MIN_STEP) else []


def evaluate(pool: dict[str, list[list[float]]], series: int) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(SEED)
    tally: dict[str, dict[str, Any]] = {name: {"steps": {}, "false": 0, "histories": 0} for name in ("ours", "t_test")}
    for step in (None, *STEPS):
        counts = {name: {"alarms": 0, "hits": 0, "found": 0, "histories": 0} for name in tally}
        for groups in pool.values():
            deviations, shifts = aa_deviations(groups), aa_shifts(groups)
            for j in range(series):
                at = int(rng.integers(3, RUNS - 2)) if step else None
                values = history(groups, at, step or 0.0, rng)
                for name, alarms in (("ours", ours(values, deviations, shifts, j)), ("t_test", plain(values))):
                    c = counts[name]
                    c["histories"] += 1
                    c["alarms"] += len(alarms)
                    hits = [a for a in alarms if at is not None and abs(a - at) <= 1]
                    c["hits"] += len(hits)
                    c["found"] += bool(hits)
        for name, c in counts.items():
            if step is None:
                tally[name]["false"] = round(100 * c["alarms"] / c["histories"], 2)
                tally[name]["histories"] = c["histories"]
            else:
                tally[name]["steps"][f"{step:g}"] = {
                    "precision": round(c["hits"] / c["alarms"], 3) if c["alarms"] else None,
                    "recall": round(c["found"] / c["histories"], 3), "histories": c["histories"]}
    return tally


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    p.add_argument("--store", type=Path, action="append", default=None,
                   help="use this store's baseline A/A windows instead of measuring (repeatable: pooled, deduplicated)")
    p.add_argument("--target", default=None, help="with --store: the target whose windows to use")
    p.add_argument("--windows", type=int, default=WINDOWS)
    p.add_argument("--per-run", type=int, default=PER_RUN)
    p.add_argument("--window-s", type=float, default=WINDOW_S)
    p.add_argument("--series", type=int, default=SERIES)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the target on a timeout
    started = time.monotonic()
    print(f"changepoints: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    if args.store:
        rows, source = stored_aa(args.store, args.target)
    else:
        measured = measure_aa(args.windows, args.per_run, args.window_s, WARMUP_S)
        rows, source = measured.rows, measured.source
    pool = pools(rows)
    if not pool:
        print(f"error: no endpoint has valid A/A windows in {MIN_POOL_RUNS} runs ({source})", file=sys.stderr)
        return 2
    print(f"source: {source}; pools: {', '.join(f'{e} ({sum(len(g) for g in gs)} windows)' for e, gs in pool.items())}")
    t0 = time.monotonic()
    tally = evaluate(pool, args.series)
    print(f"{len(pool)} pools x {args.series} histories of {RUNS} runs ({K} windows each) per step size, "
          f"metric {METRIC}; simulation {time.monotonic() - t0:.1f} s")
    print(f"{'step':>6}  {'ours precision':>14} {'recall':>6}   {'t-test precision':>16} {'recall':>6}")
    for step in STEPS:
        o, t = tally["ours"]["steps"][f"{step:g}"], tally["t_test"]["steps"][f"{step:g}"]
        print(f"{step:>6.0%}  {_f(o['precision']):>14} {_f(o['recall']):>6}   {_f(t['precision']):>16} {_f(t['recall']):>6}")
    print(f"false alarms per 100 histories without a step: ours {tally['ours']['false']}, "
          f"t-test {tally['t_test']['false']}")
    print(f"wall {time.monotonic() - started:.0f} s")
    if args.json is not None:
        doc = {"steps": {k: {"precision": v["precision"], "recall": v["recall"]} for k, v in tally["ours"]["steps"].items()},
               "false_alarms_per_100": tally["ours"]["false"], "t_test": tally["t_test"], "ours": tally["ours"],
               "source": source, "runs_per_history": RUNS, "windows_per_run": K, "metric": METRIC}
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return 0


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
