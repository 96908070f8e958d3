"""Phases the reference workflows compose: each a Prefect task over one live Run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows import steps
from tasks import loop
from tasks.analysis.cost import cost_tracking
from tasks.capacity_run import measure_capacity
from tasks.db.redact import redact_url
from tasks.errors import PerfagentsError
from tasks.refine import refine_with_search
from tasks.request import Request
from tasks.result import RunResult, RunSections
from tasks.results.history import drift, run_history
from tasks.results.learning import learning_section
from tasks.results.report import build_result, write_reports
from tasks.results.signature import record_signature
from tasks.run import Run, open_run
from tasks.store import Store
from tasks.trial import add_before, can_look_again, look, start_trial, switchable, trial_load_s

PHASE: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def step_once(run: Run) -> tuple[str | None, str | None]:
    """One change: pick, apply, measure until the rule settles, keep or revert.

    Returns (status, reason) when the loop ends. When no candidate is left, the kept state is
    profiled once more (a bottleneck hidden behind a fixed one shows now) before giving up.
    """
    goals = loop.goals_met(run)
    if goals and all(g["met"] for g in goals):
        return "goals_met", "every performance goal is met"
    window_s = run.spec.load.duration_s + run.spec.load.warmup_s
    candidate = steps.next_candidate(run)
    if candidate is None and run.profiled_seq < run.seq and run.ledger.exhausted_by(next_load_s=2 * window_s) is None:
        steps.profile_window(run, f"profile-{run.seq + 1}")
        candidate = steps.next_candidate(run)
    if candidate is None and run.advisor is not None and run.advisor.exhausted:
        return "budget_exhausted", f"{run.advisor.exhausted} would be exceeded by the advisor's next call"
    if candidate is None:
        return "no_candidates", "no untried candidate change is left" + withheld_by_spec(run)
    cold_s = run.spec.load.duration_s + 2 * run.spec.load.warmup_s
    if exhausted := run.ledger.exhausted_by(next_load_s=trial_load_s(run, candidate, cold_s)):
        return "budget_exhausted", f"the {exhausted} budget would be exceeded by the next change's trial"
    try:
        change_id, undo = steps.apply_change(run, candidate)
    except PerfagentsError:
        return None, None  # journaled as failed; the next candidate follows
    run.ledger.iterations += 1
    trial = start_trial(run, candidate, change_id, undo)
    window = steps.measure_window(run, f"change-{run.seq}", change_id, cold=True)
    look(run, trial, window)
    while can_look_again(run, trial, cold_s):
        if switchable(run, candidate):
            if not steps.switch_change(run, trial, on=False):
                break
            add_before(trial, steps.measure_window(run, f"change-{run.seq}-a{trial.looks}", change_id, cold=True))
            if not steps.switch_change(run, trial, on=True):
                break
        window = steps.measure_window(run, f"change-{run.seq}-b{trial.looks}", change_id, cold=True)
        look(run, trial, window)
    steps.settle_change(run, trial)
    return None, None


def withheld_by_spec(run: Run) -> str:
    """Why index findings became no candidate, when the spec is why (a user expects to hear it)."""
    if run.spec.database is None or run.spec.database.allow_ddl:
        return ""
    n = sum(1 for f in run.findings if f.kind in ("missing_index", "unused_index") and f.candidate is None)
    return f" ({n} index finding(s) not tried: database.allow_ddl is false in the spec)" if n else ""


def finish_run(run: Run) -> RunResult:
    goals = loop.goals_met(run) if run.baseline else []
    if run.advisor is not None:
        run.sections["llm"] = {**run.advisor.spend.summary(), "questions": run.advisor.notes}  # per question: model, result, tokens
    run.sections["learning"] = learning_section(run.store)
    result = build_result(run, goals)
    costs = result["costs"]
    run.store.finish_run(run.run_id, result["status"], result, [
        ("wall", costs["wall_s"], "s"), ("load", costs["load_s"], "s"), ("cpu", costs["cpu_s"], "s"),
        ("tokens", costs["tokens"], "tokens"), ("usd", costs["usd"], "USD")])
    if run.baseline is not None:
        run.store.save_kept_state(run.spec.name, run.rt.config, loop.kept_changes(run, run.restored), run.run_id)
        record_signature(run)
    write_reports(result, run.store.path.parent / "reports", run.request.json_path)
    steps.publish_report(result)
    return result


@task(name="profile-baseline", **PHASE)
def profile_baseline(run: Run) -> None:
    """Restore the last kept state, then baseline windows with every agent profiling."""
    if run.restored:
        steps.restore_kept(run, run.restored)
    steps.measure_baseline(run)


@task(name="optimize-with-agents", **PHASE)
def optimize_with_agents(run: Run) -> None:
    """One reversible change at a time until goals, budget or candidates end it."""
    while run.status is None:
        run.status, run.stop_reason = step_once(run)


@task(name="refine-with-search", **PHASE)
def refine_knobs(run: Run) -> None:
    """Comprehensive scope: adaptive multi-objective search over the knobs (Optuna), Pareto front."""
    if run.request.scope != "comprehensive" or run.status in ("goals_met", "budget_exhausted", "failed"):
        return
    exhausted = refine_with_search(run)
    goals = loop.goals_met(run)
    if goals and all(g["met"] for g in goals):
        run.status, run.stop_reason = "goals_met", "every performance goal is met (after the search)"
    elif exhausted:
        run.status, run.stop_reason = "budget_exhausted", f"the {exhausted} budget ended the search"


@task(name="track-costs", **PHASE)
def track_costs(run: Run) -> dict[str, Any]:
    """What the baseline and the final configuration cost per hour and per request."""
    assert run.baseline is not None and run.current is not None
    return cost_tracking(run.spec, run.baseline.stats, run.current.stats, run.baseline.config, run.rt.config)


@task(name="check-drift", **PHASE)
def check_drift(run: Run, earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare this run's starting point (the last kept state) with earlier runs."""
    assert run.baseline is not None
    return drift(run.baseline.stats, earlier, run.noise.p95_rel)


@task(name="scaling-strategy", **PHASE)
def scaling_strategy(run: Run) -> dict[str, Any]:
    """Step load on the final configuration, USL fit, and the cheapest fleet for the goal."""
    return measure_capacity(run)


def earlier_runs(store: str | Path, target: str) -> list[dict[str, Any]]:
    if not Path(store).is_file():
        return []
    with Store(store) as st:
        return run_history(st, target, limit=10)


Phase = Callable[[Run], None]
Report = Callable[[Run], RunSections]  # a reporting phase: the result sections it measured


def run_workflow(
    request: Request, *, flow_name: str, optimize: Sequence[Phase], report: Sequence[Report] = (),
) -> RunResult:
    """Run the optimizing phases (a failure ends them, reverting what is unsettled), then the
    reporting phases on whatever was measured, then write the result."""
    with open_run(request, flow=flow_name) as run:
        unexpected: Exception | None = None
        try:
            for phase in optimize:
                phase(run)
        except PerfagentsError as exc:
            run.status, run.stop_reason = "failed", str(exc)
        except Exception as exc:  # a driver's or a library's error ("database is locked"): the run
            # still ends recorded as failed, its unsettled changes reverted, then the error goes up
            first = str(exc).splitlines()[0] if str(exc) else ""
            run.status, run.stop_reason = "failed", redact_url(f"unexpected {type(exc).__name__}: {first}")
            unexpected = exc
        finally:
            loop.revert_unsettled(run)
        if unexpected is not None:
            finish_run(run)
            raise unexpected
        if run.baseline is not None and run.current is not None:
            for report_phase in report:
                try:
                    run.sections.update(report_phase(run))
                except PerfagentsError as exc:
                    run.sections.setdefault("phase_errors", []).append(str(exc))
        return finish_run(run)
