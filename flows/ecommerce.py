"""Reference workflow 1: `ecommerce-optimization`, the closed loop in the seed's four phases."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from flows import phases
from tasks.run import resolve_request
from tasks.store import DEFAULT_STORE

TARGET = "ecommerce"
initial_performance_profiling = phases.profile_baseline.with_options(name="initial-performance-profiling")
agent_based_optimization = phases.optimize_with_agents.with_options(name="agent-based-optimization")
cost_and_performance_tracking = phases.track_costs.with_options(name="cost-and-performance-tracking")
continuous_improvement_cycle = phases.check_drift.with_options(name="continuous-improvement-cycle")


@flow(name="ecommerce-optimization", log_prints=True)
def ecommerce_optimization(
    target: str = TARGET,
    performance_goals: list[str] | None = None,
    optimization_scope: Literal["quick-win", "comprehensive"] | None = None,
    budget_constraints: str | None = None,
    quality_metrics: list[str] | None = None,
    store: str = str(DEFAULT_STORE),
    json_path: str | None = None,
    remeasure: bool = False,
) -> dict[str, Any]:
    """Profile the e-commerce reference shop, optimize it, track cost, and watch for drift.

    Phase 4 (continuous improvement) is why every run starts from the last kept state stored
    for this target and reports drift against the earlier runs.

    Args:
        target: the reference target, or a spec file of the same app (e.g. with shorter windows).
        performance_goals: goals to reach, e.g. ["p95_ms<=100"]; default: the target spec's.
        optimization_scope: quick-win or comprehensive; default: the target spec's.
        budget_constraints: hard limits, e.g. "minutes=10,iterations=6"; default: the target spec's.
        quality_metrics: thresholds every kept change must hold; default: the target spec's.
        store: the DuckDB store file (history and the last kept state live here).
        json_path: where to write the machine-readable result (optional).
        remeasure: measure search configurations again even if earlier runs of this target and
            code version measured them (comprehensive scope); by default they are reused.
    """
    request = resolve_request(target, goals=performance_goals, scope=optimization_scope,
                              budget=budget_constraints, quality=quality_metrics, remeasure=remeasure)
    earlier = phases.earlier_runs(store, request.spec.name)
    return phases.run_workflow(
        request, store, flow_name="ecommerce-optimization", json_path=json_path,
        optimize=[initial_performance_profiling, agent_based_optimization, phases.refine_knobs],
        report=[lambda run: ("cost_tracking", cost_and_performance_tracking(run)),
                lambda run: ("drift", continuous_improvement_cycle(run, earlier))],
    )
