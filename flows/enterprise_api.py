"""Reference workflow 2: `enterprise-api-optimization`, with a cost-efficient scaling strategy."""

from __future__ import annotations

from prefect import flow

from flows import phases
from tasks.request import RunRequest, resolve_request
from tasks.result import RunResult

TARGET = "enterprise-api"
comprehensive_system_analysis = phases.profile_baseline.with_options(name="comprehensive-system-analysis")
multi_layered_agent_optimization = phases.optimize_with_agents.with_options(name="multi-layered-agent-optimization")
iterative_performance_refinement = phases.refine_knobs.with_options(name="iterative-performance-refinement")
cost_efficient_scaling_strategy = phases.scaling_strategy.with_options(name="cost-efficient-scaling-strategy")


@flow(name="enterprise-api-optimization", log_prints=True)
def enterprise_api_optimization(request: RunRequest = RunRequest(target=TARGET)) -> RunResult:
    """Analyse the enterprise API on every layer, optimize it, refine, and size the fleet.

    Args:
        request: the target (the reference API, or a spec file of the same app, e.g. with shorter
            windows), goals, scope, budget and quality (each overriding the spec's), and where the
            store and the result go. Set `database_url` to a postgresql:// URL to run it on
            PostgreSQL instead of the embedded SQLite. It starts from the last kept state unless
            `start_from_kept` is false.
    """
    resolved = resolve_request(request, target=TARGET, start_from_kept=True)
    return phases.run_workflow(
        resolved, flow_name="enterprise-api-optimization",
        optimize=[comprehensive_system_analysis, multi_layered_agent_optimization, iterative_performance_refinement],
        report=[lambda run: {"capacity": cost_efficient_scaling_strategy(run)}],
    )
