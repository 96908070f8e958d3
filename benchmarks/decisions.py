"""The error rates of the keep / revert rule, measured through the real loop.

    .venv/bin/python benchmarks/decisions.py [--null 20] [--real 10] [--shop-runs 2] [--json PATH]

Each trial is one real ``optimize-target`` run (Prefect flow, target started on a free port,
Locust subprocess windows, gate, store) of ``benchmarks/decision_target`` with a single knob,
so the run tries exactly one change:

- a null trial switches ``noop``, which nothing reads: keeping it is a false keep;
- a real trial switches ``lean``, which skips an extra backend wait: a modest, real gain
  (its true size, ``real_effect``, is the geometric mean of the effects the real trials
  measured, each from several windows).

Null and real trials alternate, so a drift of the machine falls on both. Then the reference
shop's A/A floor: ``--shop-runs`` times, the e-commerce target is set up and started and its
baseline measured as a run does (agent-free A/A windows, as many as the variance asks);
``aa_floor_median`` is the median of their ``noise_floor.p95_rel``.
Prints a table and the JSON summary
``{"null_trials", "false_keeps", "real_trials", "real_kept", "real_effect",
"aa_floor_median", "windows_per_decision_median"}`` (with ``--json PATH`` also written there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_HOME", str(REPO / ".perfagents" / "prefect"))  # as `make` sets it
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # as `make` sets it: a new home migrates first
# the trials decide knobs only: no profiling windows (their findings could propose nothing here)
os.environ.setdefault("PERFAGENTS_AGENTS", "none")
TARGET = REPO / "benchmarks" / "decision_target"
SHOP = REPO / "reference_workflows" / "ecommerce" / "target.yaml"
NULL_TRIALS = 20
REAL_TRIALS = 10
SHOP_RUNS = 2
FALSE_KEEP_GOAL = 0.05
REAL_KEPT_GOAL = 0.90
AA_FLOOR_GOAL = 0.10
RUN_ALL_TIMEOUT_S = 1800  # benchmarks/run_all.py: about 25 minutes with the defaults


def trial_spec(folder: Path, knob: str) -> Path:
    spec = yaml.safe_load((TARGET / "target.yaml").read_text())
    spec["start"]["cwd"] = str(TARGET)
    spec["knobs"] = {knob: spec["knobs"][knob]}
    path = folder / f"{knob}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_trial(folder: Path, knob: str, n: int) -> dict[str, Any]:
    from flows.optimize import optimize_target
    from tasks.request import RunRequest

    store = folder / f"trial-{n}.duckdb"
    started = time.monotonic()
    result = optimize_target(RunRequest(target=str(trial_spec(folder, knob)), store=str(store),
                                        budget_constraints="minutes=3,iterations=1"))
    changes = result.get("changes") or []
    change = changes[0] if changes else {}
    effect = change.get("effect") or {}
    return {"knob": knob, "status": change.get("status", "none"), "reason": change.get("reason"),
            "ratio": effect.get("ratio"), "ci95": effect.get("ci95"),
            "windows": effect.get("windows_measured") or _windows(result),
            "floor": (result.get("noise_floor") or {}).get("p95_rel"), "wall_s": round(time.monotonic() - started, 1)}


def _windows(result: dict[str, Any]) -> int | None:
    decisions = result.get("decisions") or []
    return decisions[0]["windows"] if decisions else None


def shop_floor(folder: Path, n: int) -> dict[str, Any]:
    """The reference shop's baseline floor, measured as a run measures it (agent-free A/A windows)."""
    from tasks import loop
    from tasks.request import RunRequest, resolve_request
    from tasks.run import open_run

    request = resolve_request(RunRequest(target=str(SHOP), budget_constraints="minutes=6,iterations=1",
                                         store=str(folder / f"shop-{n}.duckdb")))
    with open_run(request, flow="decisions-benchmark") as run:
        run.agents = []  # the floor only: no profiling window
        loop.measure_baseline(run)
        noise = run.noise.measured
    return {"p95_rel": noise.get("p95_rel"), "windows": noise.get("windows"), "p95_ms": noise.get("p95_ms"),
            "warmup_s": noise.get("warmup_s"), "foreign_cores": noise.get("foreign_cores")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--null", type=int, default=NULL_TRIALS)
    parser.add_argument("--real", type=int, default=REAL_TRIALS)
    parser.add_argument("--shop-runs", type=int, default=SHOP_RUNS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    total = args.null + args.real
    real_at = {int((k + 0.5) * total / args.real) for k in range(args.real)} if args.real else set()
    plan = ["lean" if i in real_at else "noop" for i in range(total)]  # real trials spread among the null ones
    started = time.monotonic()
    trials: list[dict[str, Any]] = []
    shop: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="perfagents-decisions-") as tmp:
        folder = Path(tmp)
        for n, knob in enumerate(plan, 1):
            row = run_trial(folder, knob, n)
            trials.append(row)
            print(f"trial {n:2d} {knob:5s} {row['status']:9s} ratio {row['ratio']} {row['ci95']} "
                  f"windows {row['windows']} floor {row['floor']} ({row['wall_s']} s): {row['reason']}", flush=True)
            if args.json:  # so far, in case the run is stopped before the end
                args.json.write_text(json.dumps({"partial": True, "trials": trials}, indent=2))
        for n in range(1, args.shop_runs + 1):
            row = shop_floor(folder, n)
            shop.append(row)
            print(f"shop A/A {n}: floor {row['p95_rel']} from {row['windows']} windows, p95 {row['p95_ms']}, "
                  f"warm-up {row['warmup_s']} s, foreign cores {row['foreign_cores']}", flush=True)
    nulls_done = [t for t in trials if t["knob"] == "noop"]
    reals_done = [t for t in trials if t["knob"] == "lean"]
    ratios = [t["ratio"] for t in reals_done if t["ratio"]]
    windows = [t["windows"] for t in trials if t["windows"]]
    floors = [s["p95_rel"] for s in shop if s["p95_rel"] is not None]
    summary = {
        "null_trials": len(nulls_done),
        "false_keeps": sum(t["status"] == "kept" for t in nulls_done),
        "real_trials": len(reals_done),
        "real_kept": sum(t["status"] == "kept" for t in reals_done),
        "real_effect": round(1.0 / math.exp(statistics.fmean(math.log(r) for r in ratios)), 3) if ratios else None,
        "aa_floor_median": round(statistics.median(floors), 4) if floors else None,
        "windows_per_decision_median": statistics.median(windows) if windows else None,
    }
    print(f"\n{len(trials)} trials and {len(shop)} shop baselines in {time.monotonic() - started:.0f} s")
    print(f"false keeps: {summary['false_keeps']} / {summary['null_trials']} "
          f"({summary['false_keeps'] / max(1, summary['null_trials']):.1%}; goal <= {FALSE_KEEP_GOAL:.0%})")
    print(f"real gains kept: {summary['real_kept']} / {summary['real_trials']} "
          f"({summary['real_kept'] / max(1, summary['real_trials']):.1%}; goal >= {REAL_KEPT_GOAL:.0%}), "
          f"true effect {summary['real_effect']}x faster (median, the statistic the rule judges)")
    print(f"shop A/A p95 floor, median: {summary['aa_floor_median']} (goal <= {AA_FLOOR_GOAL})")
    print(f"windows per decision, median: {summary['windows_per_decision_median']}")
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "trials": trials, "shop": shop}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
