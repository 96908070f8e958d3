"""Measure the capacity model on the live target: a step-load window, then the USL fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.analysis.capacity import (
    capacity_json,
    choose_holdout,
    fit_usl,
    holdout_error,
    read_step_plan,
    recommend,
    throughput_by_level,
)
from tasks.analysis.cost import workers_in
from tasks.errors import CapacityError
from tasks.load.runner import run_load_test
from tasks.run import Run

SHAPE_FILE = Path(__file__).resolve().parent / "load" / "step_shape.py"
DEFAULT_GOAL_FACTOR = 2.0  # without an rps goal, size the fleet for twice the measured peak


def goal_rps(run: Run, measured_peak: float) -> tuple[float, str]:
    goals = [g for g in run.request.goals if g.metric == "rps" and g.endpoint is None and not g.relative]
    if goals:
        return max(g.value for g in goals), "from the rps goal"
    return DEFAULT_GOAL_FACTOR * measured_peak, f"no rps goal given: {DEFAULT_GOAL_FACTOR:g}x the measured peak"


def measure_capacity(run: Run) -> dict[str, Any]:
    """Step the user count through the spec's capacity levels, fit the USL, check it on held-back
    levels, size the fleet."""
    spec, rt = run.spec, run.rt
    levels, step_s = spec.capacity.levels, spec.capacity.step_s
    workdir = rt.workdir / "capacity"
    workdir.mkdir(parents=True, exist_ok=True)
    plan_path = workdir / "step-plan.json"
    env = {"PERFAGENTS_STEPS": ",".join(map(str, levels)), "PERFAGENTS_STEP_S": str(step_s),
           "PERFAGENTS_STEP_PLAN_OUT": str(plan_path)}
    result = run_load_test(spec, rt.handle.base_url, workdir, label="capacity", shape_file=SHAPE_FILE,
                           duration_s=len(levels) * step_s, extra_env=env,
                           allow_remote=run.request.allow_remote, processes=rt.load_generator.processes)
    run.ledger.load_s += len(levels) * step_s
    table = throughput_by_level(result.samples, read_step_plan(plan_path))
    n, x = table["users"].to_list(), table["rps"].to_list()
    if min(x) <= 0:
        raise CapacityError(f"a step measured no successful requests: {dict(zip(n, x, strict=True))}")
    fit = fit_usl(n, x)
    held = choose_holdout(n)
    check = holdout_error(n, x, held) if held else None
    goal, why = goal_rps(run, max(x))
    cost = spec.cost
    rec = recommend(fit, goal, per_instance_workers=workers_in(spec, rt.config),
                    usd_per_worker_hour=cost.usd_per_worker_hour if cost else 0.0,
                    usd_per_instance_hour=cost.usd_per_instance_hour if cost else 0.0)
    rec["goal_source"] = why
    out = capacity_json(fit, rec, check)
    out["measured"] = table.select("users", "rps", "rps_std", "failures").to_dicts()
    return out
