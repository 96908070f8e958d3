"""The closed loop as the Prefect flow `optimize-target`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow

from flows import steps
from tasks import loop
from tasks.errors import PerfagentsError
from tasks.report import build_result, write_reports
from tasks.run import Request, Run, open_run, resolve_request
from tasks.store import DEFAULT_STORE, dumps, now


def run_closed_loop(
    request: Request, store: str | Path, *, flow_name: str, json_path: str | Path | None = None,
    start_from_kept: bool = False,
) -> dict[str, Any]:
    """Baseline, then one reversible change at a time until goals, budget or candidates end it."""
    with open_run(request, store, flow=flow_name, start_from_kept=start_from_kept) as run:
        try:
            if run.restored:
                steps.restore_kept(run, run.restored)
            steps.measure_baseline(run)
            while run.status is None:
                run.status, run.stop_reason = step_once(run)
        except PerfagentsError as exc:
            run.status, run.stop_reason = "failed", str(exc)
        finally:
            loop.revert_unsettled(run)
        return finish_run(run, json_path)


def step_once(run: Run) -> tuple[str | None, str | None]:
    """One change: pick, apply, measure, keep or revert. Returns (status, reason) when the loop ends."""
    goals = loop.goals_met(run)
    if goals and all(g["met"] for g in goals):
        return "goals_met", "every performance goal is met"
    candidate = steps.next_candidate(run)
    if candidate is None:
        return "no_candidates", "no untried candidate change is left"
    window_s = run.spec.load.duration_s + run.spec.load.warmup_s
    if exhausted := run.ledger.exhausted_by(next_load_s=window_s):
        return "budget_exhausted", f"the {exhausted} budget would be exceeded by the next change"
    try:
        change_id, undo = steps.apply_change(run, candidate)
    except PerfagentsError:
        return None, None  # journaled as failed; the next candidate follows
    run.ledger.iterations += 1
    window = steps.measure_window(run, f"change-{run.seq}", change_id)
    steps.settle_change(run, change_id, undo, candidate, window)
    return None, None


def finish_run(run: Run, json_path: str | Path | None) -> dict[str, Any]:
    goals = loop.goals_met(run) if run.baseline else []
    result = build_result(run, goals)
    with run.store.transaction() as con:
        con.execute("UPDATE runs SET ended_at = ?, status = ?, result = ? WHERE run_id = ?",
                    [now(), result["status"], dumps(result), run.run_id])
        for kind, amount, unit in (("wall", result["costs"]["wall_s"], "s"), ("load", result["costs"]["load_s"], "s"),
                                   ("cpu", result["costs"]["cpu_s"], "s"), ("tokens", result["costs"]["tokens"], "tokens"),
                                   ("usd", result["costs"]["usd"], "USD")):
            con.execute("INSERT INTO costs VALUES (?, ?, ?, ?, ?, ?)", [run.run_id, kind, amount, unit, None, now()])
    if run.baseline is not None:
        run.store.save_kept_state(run.spec.name, run.rt.config, loop.kept_changes(run, run.restored), run.run_id)
    write_reports(result, run.store.path.parent / "reports", Path(json_path) if json_path else None)
    steps.publish_report(result)
    return result


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
    """
    request = resolve_request(target, goals=performance_goals, scope=optimization_scope,
                              budget=budget_constraints, quality=quality_metrics, allow_remote=allow_remote)
    return run_closed_loop(request, store, flow_name="optimize-target", json_path=json_path,
                           start_from_kept=start_from_kept)
