"""Reference workflow 1: `ecommerce-optimization`, the closed loop in the seed's four phases."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import steps
from flows.optimize import finish_run, step_once
from tasks import loop
from tasks.cost import cost_tracking
from tasks.errors import PerfagentsError
from tasks.history import drift, run_history
from tasks.run import Run, open_run, resolve_request
from tasks.store import DEFAULT_STORE, Store

TARGET = "ecommerce"


@task(name="initial-performance-profiling", cache_policy=NO_CACHE)
def initial_performance_profiling(run: Run) -> None:
    """Phase 1: restore the last kept state, then baseline windows with every agent profiling."""
    if run.restored:
        steps.restore_kept(run, run.restored)
    steps.measure_baseline(run)


@task(name="agent-based-optimization", cache_policy=NO_CACHE)
def agent_based_optimization(run: Run) -> None:
    """Phase 2: one reversible change at a time until goals, budget or candidates end it."""
    while run.status is None:
        run.status, run.stop_reason = step_once(run)


@task(name="cost-and-performance-tracking", cache_policy=NO_CACHE)
def cost_and_performance_tracking(run: Run, baseline_config: dict[str, Any]) -> dict[str, Any]:
    """Phase 3: what the baseline and the final configuration cost per hour and per request."""
    assert run.baseline is not None and run.current is not None
    return cost_tracking(run.spec, run.baseline.stats, run.current.stats, baseline_config, run.rt.config)


@task(name="continuous-improvement-cycle", cache_policy=NO_CACHE)
def continuous_improvement_cycle(run: Run, earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """Phase 4: this run started from the last kept state; compare its baseline with earlier runs."""
    assert run.baseline is not None
    return drift(run.baseline.stats, earlier, run.noise_rel)


@flow(name="ecommerce-optimization", log_prints=True)
def ecommerce_optimization(
    performance_goals: list[str] | None = None,
    optimization_scope: Literal["quick-win", "comprehensive"] | None = None,
    budget_constraints: str | None = None,
    quality_metrics: list[str] | None = None,
    store: str = str(DEFAULT_STORE),
    json_path: str | None = None,
) -> dict[str, Any]:
    """Profile the e-commerce reference shop, optimize it, track cost, and watch for drift.

    Args:
        performance_goals: goals to reach, e.g. ["p95_ms<=100"]; default: the target spec's.
        optimization_scope: quick-win or comprehensive; default: the target spec's.
        budget_constraints: hard limits, e.g. "minutes=10,iterations=6"; default: the target spec's.
        quality_metrics: thresholds every kept change must hold; default: the target spec's.
        store: the DuckDB store file (history and the last kept state live here).
        json_path: where to write the machine-readable result (optional).
    """
    request = resolve_request(TARGET, goals=performance_goals, scope=optimization_scope,
                              budget=budget_constraints, quality=quality_metrics)
    earlier: list[dict[str, Any]] = []
    if Path(store).is_file():
        with Store(store) as st:
            earlier = run_history(st, request.spec.name, limit=10)
    with open_run(request, store, flow="ecommerce-optimization", start_from_kept=True) as run:
        baseline_config = dict(run.rt.config)
        try:
            initial_performance_profiling(run)
            agent_based_optimization(run)
        except PerfagentsError as exc:
            run.status, run.stop_reason = "failed", str(exc)
        finally:
            loop.revert_unsettled(run)
        if run.baseline is not None and run.current is not None:
            run.extra["cost_tracking"] = cost_and_performance_tracking(run, baseline_config)
            run.extra["drift"] = continuous_improvement_cycle(run, earlier)
        return finish_run(run, json_path)
