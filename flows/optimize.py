"""The closed loop as the Prefect flow `optimize-target`."""

from __future__ import annotations

from prefect import flow

from flows import phases
from tasks.request import REFERENCE_TARGET, RunRequest, resolve_request
from tasks.result import RunResult


@flow(name="optimize-target", log_prints=True)
def optimize_target(request: RunRequest = RunRequest(target=REFERENCE_TARGET)) -> RunResult:
    """Optimize one target: baseline, findings, one reversible change at a time, report.

    Args:
        request: the target (a spec file or a reference workflow name), goals, scope, budget and
            quality (each overriding the spec's), and where the store and the result go. It starts
            from the spec's default configuration unless `start_from_kept` is set.
    """
    resolved = resolve_request(request, start_from_kept=False)
    return phases.run_workflow(
        resolved, flow_name="optimize-target",
        optimize=[phases.profile_baseline, phases.optimize_with_agents, phases.refine_knobs],
    )
