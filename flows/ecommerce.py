"""Reference workflow 1: `ecommerce-optimization`, the closed loop in the seed's four phases."""

from __future__ import annotations

from prefect import flow

from flows import phases
from tasks.request import RunRequest, resolve_request
from tasks.result import RunResult

TARGET = "ecommerce"
initial_performance_profiling = phases.profile_baseline.with_options(name="initial-performance-profiling")
agent_based_optimization = phases.optimize_with_agents.with_options(name="agent-based-optimization")
cost_and_performance_tracking = phases.track_costs.with_options(name="cost-and-performance-tracking")
continuous_improvement_cycle = phases.check_drift.with_options(name="continuous-improvement-cycle")


@flow(name="ecommerce-optimization", log_prints=True)
def ecommerce_optimization(request: RunRequest = RunRequest(target=TARGET)) -> RunResult:
    """Profile the e-commerce reference shop, optimize it, track cost, and watch for drift.

    Phase 4 (continuous improvement) is why a run starts from the last kept state stored
    for this target (unless `start_from_kept` is false) and reports drift against the earlier runs.

    Args:
        request: the target (the reference shop, or a spec file of the same app, e.g. with shorter
            windows), goals, scope, budget and quality (each overriding the spec's), and where the
            store (history and the last kept state live there) and the result go.
    """
    resolved = resolve_request(request, target=TARGET, start_from_kept=True)
    earlier = phases.earlier_runs(resolved.store, resolved.spec.name)
    return phases.run_workflow(
        resolved, flow_name="ecommerce-optimization",
        optimize=[initial_performance_profiling, agent_based_optimization, phases.refine_knobs],
        report=[lambda run: {"cost_tracking": cost_and_performance_tracking(run)},
                lambda run: {"drift": continuous_improvement_cycle(run, earlier)}],
    )
