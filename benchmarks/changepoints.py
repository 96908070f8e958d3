"""How well ``perfagents regressions`` finds steps in signature histories built from real A/A windows.

    .venv/bin/python benchmarks/changepoints.py [--json PATH] [--windows 20] [--per-run 4] [--state kept|seeded]
    .venv/bin/python benchmarks/changepoints.py --store PATH --target NAME   # an existing store's A/A windows

By default it measures its own A/A windows on the e-commerce reference shop in the state ``make
run`` keeps (both planted indexes: the state a target's later runs restore before their baseline
windows, so the one its signature history and A/A pool hold; ``--state seeded`` for the shop as
seeded) with the real runner
(``tasks.window.measure_window``: Locust subprocess, the gate, the store), restarting the target
every ``--per-run`` windows so that the pool holds run-to-run variation as well as window-to-window
noise, and labels them ``baseline-N`` in a temporary store (the windows ``perfagents regressions``
calibrates on). With ``--store`` it reads an existing store's baseline A/A windows instead.

Then, per endpoint with windows in every run (and the total), it builds histories of RUNS runs:
each run's signature is the geometric mean of K windows drawn from one real run (drawn at
random; the same windows for every metric), as a signature summarises its run's windows. A
step of 5%, 10% or 20% is injected from a random run on, into every latency quantile (an
endpoint that became slower: the JSON's ``steps``) and, separately, into the p95 alone (a
tail-only regression: ``p95_only``); SERIES histories per step size, and SERIES without a step.
Two detectors judge each history on p50, the geometric mean, p95 and p99, as ``perfagents regressions`` judges every
metric: ours (tasks/analysis/changepoints.py: binary segmentation, threshold and false-alarm
rate from the pool's A/A window deviations and between-run shifts; an alarm is a confirmed
regression) and a plain one (Welch's t-test at every split, p < 0.05, no correction). Both alarm
only on a rise of more than MIN_STEP; alarms of several metrics within one run of each other are
one alarm. A hit is an alarm within one run of the injected step; precision = hits / alarms and
recall = histories with a hit / histories, per step size; false alarms per 100 = alarms in
histories without a step, per 100 histories.
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
    WORSE_UP,
    Null,
    aa_deviations,
    aa_shifts,
    build_null,
    detect,
    null_max_gains,
    t_test_detect,
)
from tasks.results.signature import stored_load_shape  # noqa: E402
from tasks.store import Store  # noqa: E402

STEPS = (0.05, 0.10, 0.20)
RUNS = 12  # runs in a history
K = 3  # windows a run's signature summarises
SERIES = 150  # histories per step size (and without a step), per endpoint pool
WINDOWS = 20
PER_RUN = 4  # more windows than a signature's K: a run's K distinct windows can be drawn 4 ways
WINDOW_S = 20.0  # as the shop's runs measure (reference_workflows/ecommerce/target.yaml); 6 s left recall at 0.02
WARMUP_S = 2.0
METRICS = tuple(m for m, up in WORSE_UP.items() if up)  # the latency metrics regressions judge
# what a step shifts: every latency quantile (a slower endpoint: a fixed per-request cost, a
# lost index) or the p95 alone (a tail-only regression: a slow path that few requests take)
MODES = {"latency": METRICS, "p95": ("p95_ms",)}
MIN_POOL_RUNS = 3
SEED = 17
RUN_ALL_TIMEOUT_S = 780  # the default run took 500 s (20 A/A windows of 20 s + 2 s, then 28 s of simulation)


def stored_aa(paths: list[Path], target: str | None) -> tuple[list[dict[str, Any]], str]:
    """The baseline A/A windows of existing stores, each window once, of the load shape that has
    the most of them (the run spec's load section, users where a run stored no spec; not the
    measured length, which the detected warm-up shortens): windows measured another way differ."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        with Store(path) as store:  # migrated as any perfagents command does (migration 6: gmean_ms)
            for r in store.aa_window_stats(target):
                seen.setdefault((r["window_id"], r["endpoint"]), r)
    shapes: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in seen.values():
        shapes[_shape(r)].add(r["window_id"])
    if not shapes:
        return [], f"existing stores ({len(paths)}): no baseline A/A windows"
    shape = max(shapes, key=lambda k: len(shapes[k]))
    rows = [r for r in seen.values() if _shape(r) == shape]
    seconds = float(np.median([float(r["duration_s"]) for r in rows]))
    return rows, (f"existing stores ({len(paths)}): {len(shapes[shape])} baseline A/A windows (median {seconds:g} s) "
                  f"with {shape[1]} users in {len({r['run_id'] for r in rows})} runs"
                  f"{' of ' + target if target else ''}")


def _shape(row: dict[str, Any]) -> tuple[str, int]:
    """The load shape as signatures key it (``perfagents regressions`` calibrates the same way)."""
    return (stored_load_shape(json.loads(row["load"])) if row["load"] else ""), int(row["users"] or 0)


Window = dict[str, float]  # metric -> value


def pools(rows: list[dict[str, Any]]) -> dict[str, list[list[Window]]]:
    """Per endpoint: each valid A/A window's latency metrics, grouped by run (runs with >= 2 windows)."""
    by: dict[str, dict[str, list[Window]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if all(r[m] is not None and r[m] > 0 for m in METRICS):
            by[r["endpoint"]][r["run_id"]].append({m: float(r[m]) for m in METRICS})
    out = {}
    for endpoint, runs in by.items():
        groups = [v for v in runs.values() if len(v) >= 2]
        if len(groups) >= MIN_POOL_RUNS:
            out[endpoint] = groups
    return out


def history(groups: list[list[Window]], step_at: int | None, step: float, shifted: tuple[str, ...],
            rng: np.random.Generator) -> dict[str, list[float]]:
    """One history of RUNS runs, per metric: each run the geometric mean of K distinct windows of
    one real run (all of them when it has fewer; the same windows for every metric), as a
    signature summarises distinct windows of its run; the metrics in ``shifted`` x (1 + step)
    from ``step_at`` on. (Drawn with replacement, a run's K windows repeated one another: its
    value was noisier than a real K-window signature.)"""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for i in range(RUNS):
        run = groups[rng.integers(len(groups))]
        picked = [run[j] for j in rng.choice(len(run), min(K, len(run)), replace=False)]
        for m in METRICS:
            value = math.exp(float(np.mean([math.log(w[m]) for w in picked])))
            out[m].append(value * (1 + step) if step_at is not None and i >= step_at and m in shifted else value)
    return out


def merged(indices: list[int]) -> list[int]:
    """Alarms of several metrics as one list: indices within one run of each other are one alarm."""
    out: list[int] = []
    for i in sorted(indices):
        if not out or i - out[-1] > 1:
            out.append(i)
    return out


def ours(values: dict[str, list[float]], nulls: dict[str, Null], null_max: dict[str, np.ndarray], seed: int) -> list[int]:
    """Confirmed regressions on any latency metric (``perfagents regressions``' rule per series;
    a pool's null is the same for every history, so its largest gains are drawn once)."""
    found = []
    for m in METRICS:
        found += [cp.index for cp in detect(values[m], nulls[m], seed=seed, null_max=null_max[m])
                  if cp.regression and cp.confirmed]
    return merged(found)


def pool_null(groups: list[list[Window]], metric: str) -> Null:
    """The null a store with these A/A windows gives this metric (its shifts need >= MIN_AA_RUNS runs)."""
    by_run = [[w[metric] for w in run] for run in groups]
    null = build_null(np.zeros(0), aa_deviations(by_run), K, aa_shifts(by_run))
    assert null is not None and null.shifts.size, "a pool has >= MIN_POOL_RUNS runs of >= 2 windows"
    return null


def plain(values: dict[str, list[float]]) -> list[int]:
    """Welch's t-test's best split on each latency metric, where it rose beyond MIN_STEP."""
    found = []
    for m in METRICS:
        cp = t_test_detect(values[m])
        if cp is not None:
            x = np.log(values[m])
            if float(x[cp:].mean() - x[:cp].mean()) > math.log1p(MIN_STEP):
                found.append(cp)
    return merged(found)


def evaluate(pool: dict[str, list[list[Window]]], series: int, shifted: tuple[str, ...],
             with_null: bool = True) -> dict[str, dict[str, Any]]:
    """Both detectors' tallies; ``with_null``: the step-free histories too (false alarms: they do
    not depend on what a step shifts, so one mode measures them)."""
    rng = np.random.default_rng(SEED)
    tally: dict[str, dict[str, Any]] = {name: {"steps": {}, "false": None, "histories": 0, "recall_by_endpoint": {}}
                                        for name in ("ours", "t_test")}
    for step in ((None,) if with_null else ()) + STEPS:
        counts = {name: {"alarms": 0, "hits": 0, "found": 0, "histories": 0} for name in tally}
        for endpoint, groups in pool.items():
            found_before = {name: c["found"] for name, c in counts.items()}
            nulls = {m: pool_null(groups, m) for m in METRICS}
            null_max = {m: null_max_gains(nulls[m], RUNS, seed=SEED) for m in METRICS}
            for j in range(series):
                at = int(rng.integers(3, RUNS - 2)) if step else None
                values = history(groups, at, step or 0.0, shifted, rng)
                for name, alarms in (("ours", ours(values, nulls, null_max, j)), ("t_test", plain(values))):
                    c = counts[name]
                    c["histories"] += 1
                    c["alarms"] += len(alarms)
                    hits = [a for a in alarms if at is not None and abs(a - at) <= 1]
                    c["hits"] += len(hits)
                    c["found"] += bool(hits)
            if step:
                for name, c in counts.items():
                    tally[name]["recall_by_endpoint"].setdefault(f"{step:g}", {})[endpoint] = round(
                        (c["found"] - found_before[name]) / series, 3)
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
    p.add_argument("--state", choices=("kept", "seeded"), default="kept",
                   help="measure the shop in the state `make run` keeps (both planted indexes: what later "
                        "runs restore and their signatures measure) or as seeded")
    p.add_argument("--keep-store", type=Path, default=None,
                   help="copy the store of the windows measured here to this path (re-read it with --store)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the target on a timeout
    started = time.monotonic()
    print(f"changepoints: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    if args.store:
        rows, source = stored_aa(args.store, args.target)
    else:
        measured = measure_aa(args.windows, args.per_run, args.window_s, WARMUP_S, keep=args.keep_store,
                              kept_state=args.state == "kept")
        rows, source = measured.rows, measured.source
    pool = pools(rows)
    if not pool:
        print(f"error: no endpoint has valid A/A windows in {MIN_POOL_RUNS} runs ({source})", file=sys.stderr)
        return 2
    print(f"source: {source}; pools: {', '.join(f'{e} ({sum(len(g) for g in gs)} windows)' for e, gs in pool.items())}")
    t0 = time.monotonic()
    tallies = {mode: evaluate(pool, args.series, shifted, with_null=i == 0) for i, (mode, shifted) in enumerate(MODES.items())}
    print(f"{len(pool)} pools x {args.series} histories of {RUNS} runs ({K} windows each) per step size; "
          f"judged on {', '.join(METRICS)} (an alarm on any of them); simulation {time.monotonic() - t0:.1f} s")
    for mode, tally in tallies.items():
        print(f"step in {'every latency quantile' if mode == 'latency' else 'the p95 alone'}:")
        print(f"{'step':>6}  {'ours precision':>14} {'recall':>6}   {'t-test precision':>16} {'recall':>6}")
        for step in STEPS:
            o, t = tally["ours"]["steps"][f"{step:g}"], tally["t_test"]["steps"][f"{step:g}"]
            print(f"{step:>6.0%}  {_f(o['precision']):>14} {_f(o['recall']):>6}   {_f(t['precision']):>16} {_f(t['recall']):>6}")
    tally = tallies["latency"]
    by_endpoint = tally["ours"]["recall_by_endpoint"][f"{STEPS[-1]:g}"]
    print(f"ours, recall of a {STEPS[-1]:.0%} step in every latency quantile by endpoint: "
          + ", ".join(f"{e} {r:.2f}" for e, r in by_endpoint.items()))
    print(f"false alarms per 100 histories without a step: ours {tally['ours']['false']}, "
          f"t-test {tally['t_test']['false']}")
    print(f"wall {time.monotonic() - started:.0f} s")
    if args.json is not None:
        doc = {"steps": {k: {"precision": v["precision"], "recall": v["recall"]} for k, v in tally["ours"]["steps"].items()},
               "false_alarms_per_100": tally["ours"]["false"], "t_test": tally["t_test"], "ours": tally["ours"],
               "p95_only": tallies["p95"], "source": source, "runs_per_history": RUNS, "windows_per_run": K,
               "metrics": list(METRICS)}
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return 0


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
