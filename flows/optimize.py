"""The closed loop as the Prefect flow `optimize-target`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow

from flows import phases
from tasks.run import Request, resolve_request
from tasks.store import DEFAULT_STORE


def run_closed_loop(
    request: Request, store: str | Path, *, flow_name: str, json_path: str | Path | None = None,
    start_from_kept: bool = False,
) -> dict[str, Any]:
    """Baseline, then one reversible change at a time until goals, budget or candidates end it."""
    return phases.run_workflow(request, store, flow_name=flow_name,
                               json_path=str(json_path) if json_path else None,
                               optimize=[phases.profile_baseline, phases.optimize_with_agents, phases.refine_knobs],
                               report=[],
                               start_from_kept=start_from_kept)


@flow(name="optimize-target", log_prints=True)
def optimize_target(
    target: str = "ecommerce",
    performance_goals: list[str] | None = None,
    optimization_scope: Literal["quick-win", "comprehensive"] | None = None,
    budget_constraints: str | None = None,
    quality_metrics: list[str] | None = None,
    store: str = str(DEFAULT_STORE),
    json_path: str | None = None,
    allow_remote: bool = False,
    start_from_kept: bool = False,
    db: str | None = None,
    remeasure: bool = False,
) -> dict[str, Any]:
    """Optimize one target: baseline, findings, one reversible change at a time, report.

    Args:
        target: a target spec file (relative to the repo root) or a reference workflow name:
            ecommerce, enterprise-api.
        performance_goals: goals to reach, e.g. ["p95_ms<=200", "rps>=500"]; default: the spec's.
        optimization_scope: quick-win (profile, rank, apply the safe top changes) or comprehensive;
            default: the spec's.
        budget_constraints: hard limits, e.g. "minutes=15,iterations=8,tokens=50000"; default: the spec's.
        quality_metrics: thresholds every kept change must hold, e.g. ["error_rate<=0.01",
            "p99_ms<=1.1*baseline"]; default: the spec's.
        store: the DuckDB store file.
        json_path: where to write the machine-readable result (optional).
        allow_remote: allow load to a host other than loopback.
        start_from_kept: start from the last kept configuration stored for this target.
        db: a database URL replacing the spec's (e.g. postgresql://user@127.0.0.1:5432/app).
        remeasure: measure search configurations again even if earlier runs of this target and
            code version measured them (comprehensive scope); by default they are reused.
    """
    request = resolve_request(target, goals=performance_goals, scope=optimization_scope,
                              budget=budget_constraints, quality=quality_metrics, allow_remote=allow_remote,
                              database_url=db, remeasure=remeasure)
    return run_closed_loop(request, store, flow_name="optimize-target", json_path=json_path,
                           start_from_kept=start_from_kept)
