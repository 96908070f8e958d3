"""The knob search (screening, then Optuna TPE) against random search, replayed on the measured e-commerce grid.

    .venv/bin/python benchmarks/search_vs_random.py [--grid reference_workflows/ecommerce/grid/grid.json]
                                                    [--seeds 5] [--sampler tpe] [--within 0.05]

No load runs here: "measuring" a configuration looks it up in grid.json (every configuration
of the e-commerce knobs, measured in several windows by grid/measure_grid.py). Both searches are the same
``tasks.search.knob_search.KnobSearch`` (memoization, constraints, ``choose``). The search a run uses
screens first (``screen_around`` the default configuration: one knob moved at a time, then the
moves that helped combined, or made again from the one that helped) and then asks ``tpe`` (or ``--sampler nsga2``); the other asks
Optuna's ``random`` sampler from the start. Each run first measures the default configuration
(the baseline window every run has), then one suggested configuration per window.

The target is the grid's best configuration by the same rule ``choose`` applies: quality
thresholds of the spec as constraints (relative ones against the default configuration),
the spec's performance goals, then the cheapest, then the lowest p95. After every window the
search's own choice is judged on the grid's values; "windows needed" is the first window at
which that choice is within ``--within`` of the best on both cost and p95 (a search that
never gets there counts as the grid size + 1, shown as ">N").

Two replays: ``exact`` (a measurement returns the grid's mean) and ``noisy`` (a measurement
returns one of the configuration's measured windows, drawn at random each time; with
``--noise-rel``, p95 and p99 scaled by exp(N(0, s)) instead), so the search can be misled by
noise as it would be live.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._grid import GRID, OBJECTIVES, close_enough, load_grid  # noqa: E402
from tasks.search.choice import Point, quality_constraints  # noqa: E402
from tasks.search.knob_search import N_STARTUP_TRIALS, KnobSearch  # noqa: E402
from tasks.search.space import config_key  # noqa: E402

Z95 = 1.959964


def noisy_stats(row: dict[str, Any], rng: np.random.Generator, noise_rel: float | None = None) -> dict[str, Any]:
    """One measurement of the row's configuration: one of its measured windows, drawn at random.

    With ``noise_rel`` (or a grid without per-window rounds): the row's stats with every p95/p99
    scaled by one lognormal draw (sd from ``noise_rel`` or the stored CI).
    """
    if noise_rel is None and row.get("rounds"):
        return json.loads(json.dumps(row["rounds"][int(rng.integers(len(row["rounds"])))]["stats"]))
    lo, hi = row["p95_ci95"]
    s = (math.log(hi) - math.log(lo)) / (2 * Z95) if lo > 0 and hi > lo else 0.0
    if noise_rel is not None:
        s = math.log1p(noise_rel) / Z95
    factor = float(math.exp(rng.normal(0.0, s)))
    stats = json.loads(json.dumps(row["stats"]))
    for section in [stats["total"], *stats["endpoints"].values()]:
        for key in ("p95_ms", "p99_ms"):
            if section.get(key) is not None:
                section[key] *= factor
    return stats


def replay(spec: Any, doc: dict[str, Any], sampler: str, seed: int, noisy: bool, best: Point,
           truth: dict[str, Point], goals: list[Any], quality: list[Any], baseline: dict[str, Any],
           within: float, startup: int, noise_rel: float | None = None) -> int:
    """Windows until the search's choice is within ``within`` of the grid's best (grid size + 1: never)."""
    rows = {config_key(r["config"]): r for r in doc["configs"]}
    rng = np.random.default_rng(10_000 + seed)
    search = KnobSearch(spec, sampler=sampler, seed=seed, objectives=OBJECTIVES, n_startup_trials=startup)
    config: dict[str, Any] | None = spec.default_config()
    for window in range(1, len(rows) + 1):
        if config is None:
            break
        row = rows[config_key(search.normalize(config))]
        stats = noisy_stats(row, rng, noise_rel) if noisy else row["stats"]
        constraints = quality_constraints(quality, stats, baseline)
        constraints["gate"] = 0.0 if row["valid"] else 1.0
        search.tell(config, {"p95_ms": stats["total"]["p95_ms"], "usd_per_hour": row["usd_per_hour"]},
                    constraints, stats=stats)
        if window == 1 and sampler != "random":
            search.screen_around(config)  # as a run's search does from its kept configuration
        chosen = search.choose(goals, [], baseline)
        if chosen is not None and close_enough(truth[config_key(chosen)], best, within):
            return window
        config = search.suggest()
    return len(rows) + 1


def show(n: int, size: int) -> str:
    return f">{size}" if n > size else str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, default=GRID)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sampler", default="tpe", choices=["tpe", "nsga2"])
    ap.add_argument("--within", type=float, default=0.05)
    ap.add_argument("--noise-rel", type=float, default=None,
                    help="noisy replay: a 95%% half-width for p95 (e.g. the A/A noise floor) instead of the stored CI")
    ap.add_argument("--startup", type=int, default=N_STARTUP_TRIALS, help="TPE's random trials before it models")
    args = ap.parse_args(argv)

    grid = load_grid(args.grid)
    doc, spec, goals, quality, baseline, truth, best = (grid.doc, grid.spec, grid.goals, grid.quality, grid.baseline,
                                                        grid.truth, grid.best)
    size = len(truth)
    near = grid.near(args.within)
    print(f"grid: {size} configurations from {args.grid.name} ({doc.get('started_at', '?')})")
    print(f"goals {spec.performance_goals}, quality {[q.text for q in quality]}; {args.sampler} starts modelling "
          f"after {args.startup} random trials (+ the default config)")
    print(f"grid best: {best.config} p95 {best.objectives['p95_ms']:.1f} ms, "
          f"{best.objectives['usd_per_hour']:.2f} USD/h; {len(near)} of {size} configurations are within "
          f"{args.within:.0%} of it; {sum(p.feasible for p in truth.values())} feasible")
    third = size // 3
    for mode in ("exact", "noisy"):
        print(f"\n{mode} replay: windows to get within {args.within:.0%} of the grid best "
              f"(default config first; a third of the grid is {third})")
        print(f"{'seed':>6} {args.sampler:>8} {'random':>8}")
        needed: dict[str, list[int]] = {args.sampler: [], "random": []}
        for seed in range(args.seeds):
            for sampler in needed:
                needed[sampler].append(replay(spec, doc, sampler, seed, mode == "noisy", best, truth, goals,
                                              quality, baseline, args.within, args.startup, args.noise_rel))
            print(f"{seed:>6} {show(needed[args.sampler][-1], size):>8} {show(needed['random'][-1], size):>8}")
        med_s, med_r = statistics.median(needed[args.sampler]), statistics.median(needed["random"])
        hit_s = sum(n <= third for n in needed[args.sampler])
        hit_r = sum(n <= third for n in needed["random"])
        print(f"{'median':>6} {med_s:>8g} {med_r:>8g}   ratio random/{args.sampler} {med_r / med_s:.2f}")
        print(f"within a third of the grid ({third} windows): {args.sampler} {hit_s}/{args.seeds}, "
              f"random {hit_r}/{args.seeds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
