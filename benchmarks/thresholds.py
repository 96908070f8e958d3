"""How often the quality-threshold rule breaks a threshold that held, and how often it catches one that broke.

    .venv/bin/python benchmarks/thresholds.py [--json PATH] [--windows 12] [--per-run 6] [--trials 300]
    .venv/bin/python benchmarks/thresholds.py --store PATH [--target NAME]   # an existing store's A/A windows

The rule (tasks/decisions/quality.py ``broken_quality``, as the loop calls it from
tasks/trial.py) breaks ``p99_ms<=1.1*baseline`` only when the one-sided 95% lower bound of the
p99 ratio (the change's windows against the baseline's A/A windows, hierarchical bootstrap) lies
above 1.1; ``rps>=0.9*baseline`` when the upper bound of the rps ratio lies below 0.9.

By default it measures its own agent-free A/A windows of the e-commerce reference shop with the
real runner (tasks.window.measure_window: Locust subprocess, the gate), restarting the target
every ``--per-run`` windows; with ``--store`` it reads an existing store's valid baseline A/A
windows. Each trial draws, within one run's windows, a baseline arm (2 or 3 windows, as a run's
A/A phase leaves) and a disjoint "after" arm (2 to 4 windows, as a trial's looks leave):

- null: the after arm as measured (nothing changed): a break is a false break;
- broken: the after arm's latencies x1.5 (p99 and p95 rules: the truth is 1.5 against a 1.1
  limit) or 40% of its requests dropped at random (rps: 0.6 against 0.9): a break is caught.

Trials of one run share windows, so they are not independent: the interval printed beside each
rate (Wilson, 95%) counts windows' runs, not trials, as the effective sample is smaller than the
trial count. ``--json`` writes {"windows", "runs", "trials", "rules": {rule: {"false_breaks",
"caught", ...}}, "source"}.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._aa import measure_aa  # noqa: E402
from tasks.decisions.effect import between_tau, window_stats  # noqa: E402
from tasks.decisions.quality import broken_quality, wilson_bounds  # noqa: E402
from tasks.expressions import parse_expressions  # noqa: E402
from tasks.store import Store  # noqa: E402

RULES = ("p99_ms<=1.1*baseline", "p95_ms<=1.1*baseline", "rps>=0.9*baseline")
INFLATE = 1.5  # a broken latency threshold: the after arm's latencies x1.5
KEEP_SHARE = 0.6  # a broken throughput threshold: 60% of the after arm's requests kept
WINDOW_S, WARMUP_S = 6.0, 2.0
SEED = 23
RUN_ALL_TIMEOUT_S = 600  # ~4 min measured beside other work (18 windows), the trials ~1 min


def stored_aa(path: Path, target: str | None) -> tuple[dict[str, list[pl.DataFrame]], str]:
    runs: dict[str, list[pl.DataFrame]] = defaultdict(list)
    with Store(path, read_only=True) as store:
        rows = store.aa_window_stats(target)
        ids = list(dict.fromkeys((r["run_id"], r["window_id"]) for r in rows))
        for run_id, window_id in ids:
            frame = store.window_samples(window_id)
            if frame.height:
                runs[run_id].append(frame)
    n = sum(map(len, runs.values()))
    return dict(runs), f"{path}: {n} valid baseline A/A windows in {len(runs)} runs{' of ' + target if target else ''}"


def broken_variant(frames: list[pl.DataFrame], rule: str, rng: np.random.Generator) -> list[pl.DataFrame]:
    if rule.startswith("rps"):
        return [f.filter(pl.Series(rng.random(f.height) < KEEP_SHARE)) for f in frames]
    return [f.with_columns(pl.col("latency_ms") * INFLATE) for f in frames]


def trials(runs: dict[str, list[pl.DataFrame]], n: int, seed: int) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    usable = [w for w in runs.values() if len(w) >= 4]
    if not usable:
        raise SystemExit("no run has 4 valid A/A windows: measure more (--windows, --per-run)")
    counts = {rule: {"false_breaks": 0, "caught": 0, "trials": 0} for rule in RULES}
    expressions = {rule: parse_expressions(rule) for rule in RULES}
    for _ in range(n):
        windows = usable[rng.integers(len(usable))]
        order = rng.permutation(len(windows))
        b = int(rng.integers(2, 4)) if len(windows) >= 5 else 2
        a = int(rng.integers(2, min(4, len(windows) - b) + 1))
        base = [windows[i] for i in order[:b]]
        after = [windows[i] for i in order[b:b + a]]
        tau, _ = between_tau([window_stats(base, "p50_ms", seed=5)])  # the loop's prior, from the kept state
        for rule in RULES:
            c = counts[rule]
            c["trials"] += 1
            c["false_breaks"] += bool(broken_quality(expressions[rule], after, base, None, prior_tau=tau or 0.0))
            c["caught"] += bool(broken_quality(expressions[rule], broken_variant(after, rule, rng), base, None,
                                               prior_tau=tau or 0.0))
    for c in counts.values():
        t = c["trials"]
        c["false_break_rate"], c["caught_rate"] = round(c["false_breaks"] / t, 4), round(c["caught"] / t, 4)
        lo, hi = wilson_bounds(c["false_breaks"], t, z=1.96)
        c["false_break_ci95"] = [round(lo, 4), round(hi, 4)]
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--per-run", type=int, default=6)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--target")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run_all's stop: the finally blocks stop the target
    if args.windows < 4 or args.per_run < 4 or args.trials < 1:
        parser.error("--windows and --per-run need at least 4, --trials at least 1")
    t0 = time.monotonic()
    if args.store is not None:
        if not args.store.is_file():
            parser.error(f"--store {args.store}: no such file")
        runs, source = stored_aa(args.store, args.target)
    else:
        measured = measure_aa(args.windows, args.per_run, WINDOW_S, WARMUP_S)
        runs, source = measured.frames, measured.source
    print(source)
    counts = trials(runs, args.trials, SEED)
    print(f"{'rule':<24} {'false breaks (null)':>24} {'caught (broken)':>18}")
    for rule, c in counts.items():
        ci = c["false_break_ci95"]
        print(f"{rule:<24} {c['false_breaks']:>5}/{c['trials']:<4} {c['false_break_rate']:>6.1%} "
              f"[{ci[0]:.1%}, {ci[1]:.1%}] {c['caught']:>5}/{c['trials']:<4} {c['caught_rate']:>6.1%}")
    print(f"({time.monotonic() - t0:.0f} s; trials share windows: the intervals are narrower than the evidence)")
    if args.json:
        args.json.write_text(json.dumps({"windows": sum(map(len, runs.values())), "runs": len(runs),
                                         "trials": args.trials, "rules": counts, "source": source}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
