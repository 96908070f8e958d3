"""Reference workflow 2: `enterprise-api-optimization`, with a cost-efficient scaling strategy."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from flows import phases
from tasks.run import resolve_request
from tasks.store import DEFAULT_STORE

TARGET = "enterprise-api"
comprehensive_system_analysis = phases.profile_baseline.with_options(name="comprehensive-system-analysis")
multi_layered_agent_optimization = phases.optimize_with_agents.with_options(name="multi-layered-agent-optimization")
iterative_performance_refinement = phases.refine_knobs.with_options(name="iterative-performance-refinement")
cost_efficient_scaling_strategy = phases.scaling_strategy.with_options(name="cost-efficient-scaling-strategy")


@flow(name="enterprise-api-optimization", log_prints=True)
def enterprise_api_optimization(
    target: str = TARGET,
    performance_goals: list[str] | None = None,
    optimization_scope: Literal["quick-win", "comprehensive"] | None = None,
    budget_constraints: str | None = None,
    quality_metrics: list[str] | None = None,
    db: str | None = None,
    store: str = str(DEFAULT_STORE),
    json_path: str | None = None,
    remeasure: bool = False,
) -> dict[str, Any]:
    """Analyse the enterprise API on every layer, optimize it, refine, and size the fleet.

    Args:
        target: the reference target, or a spec file of the same app (e.g. with shorter windows).
        performance_goals: goals to reach, e.g. ["p95_ms<=200", "rps>=80"]; default: the spec's.
        optimization_scope: quick-win or comprehensive; default: the target spec's.
        budget_constraints: hard limits, e.g. "minutes=15,iterations=8"; default: the spec's.
        quality_metrics: thresholds every kept change must hold; default: the spec's.
        db: a database URL replacing the embedded SQLite default, e.g.
            postgresql://postgres@127.0.0.1:5432/api (the password, if any, from PGPASSWORD).
        store: the DuckDB store file.
        json_path: where to write the machine-readable result (optional).
        remeasure: measure search configurations again even if earlier runs of this target and
            code version measured them (comprehensive scope); by default they are reused.
    """
    request = resolve_request(target, goals=performance_goals, scope=optimization_scope,
                              budget=budget_constraints, quality=quality_metrics, database_url=db,
                              remeasure=remeasure)
    return phases.run_workflow(
        request, store, flow_name="enterprise-api-optimization", json_path=json_path,
        optimize=[comprehensive_system_analysis, multi_layered_agent_optimization, iterative_performance_refinement],
        report=[lambda run: ("capacity", cost_efficient_scaling_strategy(run))],
    )
