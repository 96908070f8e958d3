"""Does ranking candidates with the calibration learned from history order them better?

    .venv/bin/python benchmarks/ranking.py [--json PATH] [--store PATH ...]
    .venv/bin/python benchmarks/ranking.py --build 2 --minutes 5     # real runs first, then the replay

It replays the history of existing stores: every tried change's estimate and measurement
(``change_estimates``; changes journaled before that table are rebuilt from their run's findings,
tasks/search/estimates.py). The stores are the ones ``--store`` names (paths or globs, repeatable;
pooled, each change once), else every ``.perfagents/*.duckdb`` under the repository and the
current directory. When their history holds fewer than MIN_RUNS runs with two measured changes
of each reference target (ecommerce, enterprise-api), it first builds more with real short runs
(``perfagents run <target> --budget minutes=M``, each in a fresh store, each bounded in time).

Leave one run out: for every run with at least two measured changes, the calibration is fitted
on all the other runs' changes, and the run's changes are scored twice, as the loop ranks them
(tasks/search/optimizer.py ``score``): with their own estimates (unlearned) and with the
calibrated ones (learned). Each ordering is compared with the measured gains (-ln ratio; a
throughput decision's ratio inverted) by Spearman's rank correlation, per run (then averaged)
and pooled over all runs' changes; "top-1" is how often the first-ranked change was the one
that measured best. Per kind it prints the estimated and the measured ratios (geometric means)
and how much of the estimated log-gain came true.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from tasks.findings import Candidate
from tasks.search.calibration import Calibration, fit_calibration
from tasks.search.estimates import history, kind_summary, observations
from tasks.search.optimizer import score
from tasks.store import Store

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("ecommerce", "enterprise-api")
MIN_RUNS = 2  # runs with two measured changes, per reference target, before the replay trusts a pool
MIN_CHANGES = 2  # a run's changes with a measured interval, for a rank correlation within it
BUILD_MINUTES = 5.0  # a built run's budget
RUN_GRACE_S = 240  # on top of a built run's budget: setup, Prefect, the report
RUN_ALL_TIMEOUT_S = 1500  # reading stores takes seconds; building 2 runs of each target ~22 min


def store_paths(patterns: list[str] | None) -> list[Path]:
    """The stores to read: ``patterns`` (paths or globs), else the repository's and the current directory's."""
    if not patterns:
        patterns = [str(REPO / ".perfagents" / "*.duckdb"), str(Path.cwd() / ".perfagents" / "*.duckdb")]
    found = {Path(p).resolve() for pattern in patterns for p in glob.glob(pattern)}
    return sorted(p for p in found if p.is_file())


def pooled_history(paths: list[Path], targets: tuple[str, ...] | None = None,
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every store's history (of ``targets``), each change once (stores copied from one another share changes)."""
    rows: dict[str, dict[str, Any]] = {}
    notes = []
    for path in paths:
        try:
            with Store(path, read_only=True) as store:
                found = history(store)
        except Exception as exc:  # noqa: BLE001 - a store held by a writer, or not ours: say so, use the rest
            notes.append(f"{path}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
            continue
        for r in found:
            if targets is not None and r["target"] not in targets:
                continue
            rows.setdefault(r["change_id"], r)
    return sorted(rows.values(), key=lambda r: (str(r["run_started_at"]), r["change_id"])), notes


def runs_with_measurements(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Per target: the runs with at least MIN_CHANGES measured changes."""
    measured = {o.run_id: 0 for o in observations(rows)}
    for o in observations(rows):
        measured[o.run_id] += 1
    targets = {r["run_id"]: r["target"] for r in rows}
    out: dict[str, int] = defaultdict(int)
    for run_id, n in measured.items():
        if n >= MIN_CHANGES:
            out[targets[run_id]] += 1
    return dict(out)


def build_runs(folder: Path, per_target: int, minutes: float, targets: tuple[str, ...] = TARGETS) -> list[Path]:
    """``per_target`` real runs of each of ``targets``, alternating, each in a fresh store."""
    perfagents = Path(sys.executable).parent / "perfagents"
    stores = []
    for i in range(per_target):
        for target in targets:
            store = folder / f"{target}-{i + 1}.duckdb"
            t0 = time.monotonic()
            cmd = [str(perfagents), "run", target, "--store", str(store), "--budget", f"minutes={minutes:g}", "--quiet",
                   "--json", str(folder / f"{target}-{i + 1}.json")]
            process = subprocess.Popen(cmd, cwd=folder, start_new_session=True, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
            try:
                _, err = process.communicate(timeout=minutes * 60 + RUN_GRACE_S)
                status = f"exit {process.returncode}" + (f": {err.strip().splitlines()[-1][:160]}"
                                                         if process.returncode and err.strip() else "")
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                status = "timed out"
            print(f"  built {target} run {i + 1}: {status}, {time.monotonic() - t0:.0f} s", flush=True)
            if store.exists():
                stores.append(store)
    return stores


def candidate_of(row: dict[str, Any]) -> Candidate:
    return Candidate(row["change_kind"], {}, "", risk=row.get("risk") or "low",
                     expected_gain=float(row["expected_gain"] or 0.0), basis=row["basis"] or "")


def replay(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Leave one run out: per evaluated run, Spearman of each ordering with the measured gains."""
    obs_by_change = {}
    for r in rows:
        found = observations([r])
        if found:
            obs_by_change[r["change_id"]] = found[0]
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["change_id"] in obs_by_change:
            by_run[r["run_id"]].append(r)
    per_run, pooled = [], {"measured": [], "unlearned": [], "learned": []}
    for run_id, mine in by_run.items():
        if len(mine) < MIN_CHANGES:
            continue
        others = [o for cid, o in obs_by_change.items() if o.run_id != run_id]
        calibration: Calibration = fit_calibration(others)
        measured = [-obs_by_change[r["change_id"]].log_ratio for r in mine]
        unlearned = [score(candidate_of(r)) for r in mine]
        learned = [score(candidate_of(r), calibration) for r in mine]
        pooled["measured"] += measured
        pooled["unlearned"] += unlearned
        pooled["learned"] += learned
        best = int(np.argmax(measured))
        per_run.append({"run_id": run_id, "target": mine[0]["target"], "changes": len(mine),
                        "rho_unlearned": _rho(unlearned, measured), "rho_learned": _rho(learned, measured),
                        "top1_unlearned": _top(unlearned) == best, "top1_learned": _top(learned) == best,
                        "history_used": len(others)})
    out: dict[str, Any] = {"runs": per_run, "runs_evaluated": len(per_run)}
    for name in ("unlearned", "learned"):
        rhos = [r[f"rho_{name}"] for r in per_run if r[f"rho_{name}"] is not None]
        out[name] = {"spearman_mean": round(float(np.mean(rhos)), 3) if rhos else None, "runs_with_rho": len(rhos),
                     "spearman_pooled": _rho(pooled[name], pooled["measured"]),
                     "top1": round(sum(r[f"top1_{name}"] for r in per_run) / len(per_run), 3) if per_run else None}
    return out


def _top(scores: list[float]) -> int:
    return int(np.argmax(scores))  # ties: the first, as a stable sort keeps the journal's order


def _rho(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    value = float(spearmanr(a, b).statistic)
    return None if math.isnan(value) else round(value, 3)


def print_tables(rows: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = kind_summary(rows, fit_calibration(observations(rows)))
    print(f"\n{'kind':<34} {'tried':>5} {'kept':>4} {'meas.':>5} {'est. ratio':>10} {'meas. ratio':>11}  came true [95% CI]")
    for k in kinds:
        share = "-" if k["share"] is None else f"{k['share']:.2f} [{k['share_ci95'][0]:.2f}, {k['share_ci95'][1]:.2f}]"
        print(f"{k['kind']:<34} {k['tried']:>5} {k['kept']:>4} {k['measured']:>5} {_r(k['estimated_ratio']):>10} "
              f"{_r(k['measured_ratio']):>11}  {share}")
    print(f"\nleave one run out, {result['runs_evaluated']} runs with >= {MIN_CHANGES} measured changes:")
    print(f"{'ranking':<10} {'Spearman (mean of runs)':>24} {'Spearman (pooled)':>18} {'top-1':>6}")
    for name in ("unlearned", "learned"):
        r = result[name]
        print(f"{name:<10} {_r(r['spearman_mean']):>24} {_r(r['spearman_pooled']):>18} {_r(r['top1']):>6}")
    return kinds


def _r(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    p.add_argument("--store", action="append", default=None, help="a store (path or glob; repeatable)")
    p.add_argument("--build", type=int, default=None,
                   help="real runs per reference target to add first (default: as many as the pool lacks)")
    p.add_argument("--minutes", type=float, default=BUILD_MINUTES, help="a built run's minutes budget")
    p.add_argument("--build-targets", nargs="+", choices=TARGETS, default=list(TARGETS),
                   help="the reference targets to build runs of")
    p.add_argument("--build-dir", type=Path, default=None,
                   help="keep the built runs' stores here (default: a temporary folder, removed)")
    p.add_argument("--all-targets", action="store_true",
                   help="replay every target's changes (default: the reference targets' only)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    print(f"ranking: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    paths = store_paths(args.store)
    keep = None if args.all_targets else TARGETS
    rows, notes = pooled_history(paths, keep)
    counts = runs_with_measurements(rows)
    lacking = max(MIN_RUNS - counts.get(t, 0) for t in TARGETS)
    build = lacking if args.build is None else args.build
    with tempfile.TemporaryDirectory(prefix="bench-ranking-") as tmp:
        folder = args.build_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if build > 0:
            print(f"the stores' history has {counts or 'no'} runs with >= {MIN_CHANGES} measured changes: "
                  f"building {build} run(s) of each of {', '.join(args.build_targets)} ({args.minutes:g} min each)",
                  flush=True)
            paths += build_runs(folder, build, args.minutes, tuple(args.build_targets))
            rows, notes = pooled_history(paths, keep)
            counts = runs_with_measurements(rows)
    for note in notes:
        print(f"  {note}")
    targets = sorted({r["target"] for r in rows})
    print(f"source: {len(paths)} store(s), {len({r['run_id'] for r in rows})} runs of {', '.join(targets) or '-'}, "
          f"{len(rows)} tried changes ({sum(r['source'] == 'rebuilt' for r in rows)} rebuilt from legacy findings), "
          f"{len(observations(rows))} with a measured interval; runs with >= {MIN_CHANGES}: {counts}")
    if not rows:
        print("error: no tried change in any store", file=sys.stderr)
        return 2
    result = replay(rows)
    kinds = print_tables(rows, result)
    print(f"wall {time.monotonic() - started:.0f} s")
    if args.json is not None:
        doc = {"kinds": kinds, "unlearned": result["unlearned"], "learned": result["learned"],
               "runs_evaluated": result["runs_evaluated"], "runs": result["runs"], "targets": targets,
               "stores": [str(p) for p in paths], "changes": len(rows), "observations": len(observations(rows)),
               "runs_by_target": counts}
        args.json.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
