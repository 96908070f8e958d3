"""The steps of the closed loop as plain functions (the flow wraps each in a Prefect task)."""

from __future__ import annotations

from typing import Any

from tasks import progress
from tasks.advisor.candidates import next_code_candidate, open_questions, settle_patch
from tasks.analysis.compare import check_goals
from tasks.analysis.noise import AdaptiveNoise, estimate_noise, estimate_rps_noise
from tasks.changes import KNOB_KINDS
from tasks.changes.journal import (
    apply_candidate,
    mark_change,
    open_changes,
    plan_change,
    revert_change,
)
from tasks.correctness import ResponseCheck
from tasks.decisions.vitals import vital_goals
from tasks.errors import PerfagentsError
from tasks.findings import Candidate, Finding, stronger
from tasks.pages import note_profiled
from tasks.run import Run
from tasks.search.estimates import estimate_of, fit_history
from tasks.search.optimizer import (
    candidates_from_findings,
    covered_by_kept,
    knob_candidates,
    rank_candidates,
)
from tasks.store.learning import RESTORED_REASON
from tasks.trial import Trial, state_regime, trial_load_s
from tasks.window import Window, measure_window

NOISE_FLOOR_MIN = 0.02  # never report a noise floor below 2 %
NOISE_FLOOR_ASSUMED = 0.10  # used when only one baseline window could be measured
MAX_BASELINE_WINDOWS = 6  # A/A windows plus re-measured invalid ones


def measure(run: Run, label: str, change_id: str | None = None, *, agents: list[Any] | None = None,
            cold: bool = False) -> Window:
    """One agent-free window of the current state (a profiling window passes ``agents``).

    ``cold``: the window follows a change that left cold state (an index built or dropped, a
    knob set, a restart): it plans twice the spec's warm-up, and the steady state is detected.
    """
    warmup = run.spec.load.warmup_s * (2 if cold else 1)
    duration = run.spec.load.profile_window_s if agents else run.spec.load.duration_s
    # a profiling window decides nothing: it keeps the spec's fixed warm-up, the span the agents'
    # request attribution (statements to Locust names by time) was built and tested on
    return measure_window(run.store, run.run_id, run.rt, label, agents=agents or [], ledger=run.ledger,
                          max_error_rate=run.request.max_error_rate, change_id=change_id,
                          allow_remote=run.request.allow_remote, warmup_s=warmup, detect_warmup=not agents,
                          duration_s=duration)


def profile(run: Run, label: str) -> Window | None:
    """A window with every agent profiling: its findings join the run's; it decides nothing.

    Profilers cost the target latency and throughput (benchmarks/agents_overhead.py), so their
    windows are kept apart from the windows that decide.
    """
    if not run.agents:
        return None
    window = measure(run, label, agents=run.agents)
    _merge_findings(run, window.findings)
    note_profiled(run, window)
    run.profiled_seq = run.seq
    return window


def measure_baseline(run: Run) -> Window:
    """A profiling window, then agent-free A/A windows, as many as the observed variance needs
    (tasks/analysis/noise.py).

    The last valid A/A window is the baseline; their spread is the noise floor. When the budget
    leaves room for one window only, the noise floor is assumed and the report says so.
    """
    window_s = run.spec.load.duration_s + run.spec.load.warmup_s
    noise = AdaptiveNoise(can_afford=lambda: run.ledger.exhausted_by(next_load_s=window_s, next_iteration=False) is None)
    wants_responses = any(q.metric == "responses" for q in run.request.quality)
    if wants_responses:
        run.responses = ResponseCheck.from_spec(run.spec, run.spec.correctness)
    profiled = profile(run, "profile-1")
    # a second profiling window when the budget has room for it, two A/A windows and a change's
    # first two windows besides (else the findings it adds could not be tried): the agents pool
    # evidence over windows (py-spy samples, blocking-loop samples), and one window of them
    # leaves the quieter findings (a blocking call, a hot function) below significance
    profile_s = run.spec.load.profile_window_s + run.spec.load.warmup_s
    if profiled is not None and run.ledger.exhausted_by(next_load_s=profile_s + 4 * window_s,
                                                        next_iteration=False) is None:
        profiled = profile(run, "profile-2") or profiled
    windows: list[Window] = []
    while True:
        if windows and not noise.can_afford():
            break
        window = measure(run, f"baseline-{len(windows) + 1}")
        windows.append(window)
        if window.valid:
            noise.add(window.samples)
            if run.responses is not None:
                run.responses.capture_baseline(run.rt.handle.base_url)
        if len(noise.windows) >= 2 and not noise.need_more():
            break
        if len(windows) >= MAX_BASELINE_WINDOWS or not noise.can_afford():
            break
    valid = [w for w in windows if w.valid]
    if not valid and profiled is not None and profiled.valid:
        valid = [profiled]  # the budget allowed no agent-free window: the profiling one stands in
    if not valid:
        raise PerfagentsError(f"no valid baseline window: {'; '.join(windows[-1].reasons)}")
    run.baseline = run.current = valid[-1]
    run.noise.baseline_aa = run.noise.kept_aa = valid
    kind, share = state_regime(run, valid)
    if len(valid) >= 2:
        estimate = noise.estimate()
        run.noise.p95_rel = max(NOISE_FLOOR_MIN, estimate.noise_rel)
        # the floor of the statistic decisions judge (the median), beside the p95 one
        median_rel = estimate_noise(noise.windows, q=0.5).noise_rel
        measured = {**estimate.to_dict(), "p50_rel": median_rel,
                    "rps_rel": max(NOISE_FLOOR_MIN, estimate_rps_noise(noise.windows)), "reason": noise.reason}
    else:
        run.noise.p95_rel = NOISE_FLOOR_ASSUMED
        measured = {"note": "one valid baseline window: noise floor assumed, not measured"}
    run.noise.measured = {**measured, "regime": kind, "busy_share": share, "warmup_s": [w.warmup_s for w in windows],
                          "foreign_cores": [w.foreign_cores for w in windows]}
    progress.emit("noise", scope="baseline", p95_rel=run.noise.p95_rel, p50_rel=measured.get("p50_rel"),
                  windows=len(valid), regime=kind)
    return run.baseline


def next_candidate(run: Run) -> Candidate | None:
    """The best untried change, from the current window's findings and the knobs."""
    assert run.current is not None
    candidates = candidates_from_findings(run.findings)
    if run.request.scope == "comprehensive":  # the knobs are left to the search (tasks/refine.py)
        candidates = [c for c in candidates if c.kind not in KNOB_KINDS]
    else:
        candidates += knob_candidates(run.spec, run.rt.config, run.findings)
    kept = [c for c in run.changes if c["status"] == "kept"]
    if run.calibration is None:  # how far each kind's estimates came true in the store's history
        run.calibration = fit_history(run.store)
    ranked = [c for c in rank_candidates(candidates, run.tried, run.calibration) if not covered_by_kept(c, kept)]
    # code-level findings: a patch from the model (tasks/advisor/candidates.py), asked for only
    # when the budget can still try it (tokens are not spent on a patch no trial would measure)
    cold_s = run.spec.load.duration_s + 2 * run.spec.load.warmup_s
    patch_trial_s = trial_load_s(run, Candidate("code_patch", {}, ""), cold_s)
    if run.advisor is not None:
        if (why := run.ledger.exhausted_by(next_load_s=patch_trial_s)) is None:
            return next_code_candidate(run.advisor, run.findings, ranked[0] if ranked else None)
        if open_questions(run.advisor, run.findings):
            run.advisor.exhausted = f"the {why} budget (a patch's trial)"
    return ranked[0] if ranked else None


def apply_change(run: Run, candidate: Candidate, *, restoring: bool = False) -> tuple[str, dict[str, Any]]:
    """Journal (with what the change is estimated to gain, unless it is restored), then apply;
    returns the change id and its exact undo. A failed apply is journaled."""
    run.seq += 1
    run.tried.add(candidate.key())
    change_id = plan_change(run.store, run.run_id, run.spec.name, run.seq, candidate)
    estimate = None if restoring else estimate_of(candidate, run.findings, run.calibration)
    if estimate is not None:
        run.store.insert_estimate(change_id, run_id=run.run_id, target=run.spec.name, estimate=estimate)
    try:
        undo = apply_candidate(run.store, run.rt, change_id, candidate)
    except PerfagentsError as exc:
        run.store.settle_estimate(change_id, "failed", None)
        row = _row(candidate, "failed", str(exc), None)
        if candidate.kind == "code_patch" and run.advisor is not None:
            settle_patch(run.advisor, run.store, change_id, candidate, row)
        run.changes.append(row)
        raise
    return change_id, undo


def revert_applied(run: Run, change_id: str, candidate: Candidate, undo: dict[str, Any], reason: str) -> None:
    """Put the kept state back after a change that was only measured (a search trial)."""
    revert_change(run.store, run.rt, change_id, candidate.kind, undo, reason)


def settle_change(run: Run, trial: Trial) -> dict[str, Any]:
    """Keep the change (its windows become the kept state's) or revert it exactly; journal either way."""
    verdict = trial.verdict
    assert verdict is not None and run.current is not None
    keep = verdict.outcome == "better"
    effect = dict(verdict.effect or {}) or None
    if effect is not None:
        effect["windows_measured"] = trial.windows
        effect["warmup_s"] = [w.warmup_s for w in trial.after]  # detected in each window with the change
    if keep:
        mark_change(run.store, trial.change_id, "kept", reason=verdict.reason, effect=effect)
        # the windows that earned the keep read well by selection (the winner's curse): the next
        # change is compared with them only until its own interleaved A windows come in
        run.current, run.noise.kept_aa = trial.after[-1], list(trial.after)
        if trial.page_loads is not None:
            run.page_loads["current"] = trial.page_loads
    else:
        if trial.on:
            revert_change(run.store, run.rt, trial.change_id, trial.candidate.kind, trial.undo, verdict.reason, effect)
        else:
            mark_change(run.store, trial.change_id, "reverted", reason=verdict.reason, effect=effect)
        run.noise.kept_aa = [*run.noise.kept_aa, *trial.fresh]  # fresh windows of the kept state
        if trial.fresh:
            run.current = trial.fresh[-1]
    row = _row(trial.candidate, "kept" if keep else "reverted", verdict.reason, effect)
    run.store.settle_estimate(trial.change_id, row["status"], effect)  # what was measured, beside the estimate
    if trial.candidate.kind == "code_patch" and run.advisor is not None:
        settle_patch(run.advisor, run.store, trial.change_id, trial.candidate, row)  # cache outcome, diff file
    progress.emit("change", **row)
    run.changes.append(row)
    run.decisions.append({"change": trial.candidate.description, "outcome": verdict.outcome,
                          "windows": trial.windows, "looks": trial.looks})
    return row


def goals_met(run: Run) -> list[dict[str, Any]]:
    """Goal rows; Web Vitals goals are judged on the current state's page loads, with their interval."""
    assert run.current is not None and run.baseline is not None
    vitals = vital_goals(run.request.goals, run.page_loads.get("current"), run.page_loads.get("baseline"))
    rows = check_goals(run.request.goals, run.current.stats, run.baseline.stats)
    return [vitals.get(row["expr"], row) for row in rows]


def _merge_findings(run: Run, new: list[Finding]) -> None:
    """One finding per (agent, kind, location): the strongest evidence any window gave for it.

    A bottleneck hidden behind a bigger one shows its size once the bigger one is fixed.
    """
    index = {(f.agent, f.kind, f.location): i for i, f in enumerate(run.findings)}
    for f in new:
        key = (f.agent, f.kind, f.location)
        if key not in index:
            index[key] = len(run.findings)
            run.findings.append(f)
        elif stronger(f, run.findings[index[key]]):
            run.findings[index[key]] = f


def _row(candidate: Candidate, status: str, reason: str, effect: dict[str, Any] | None) -> dict[str, Any]:
    return {"kind": candidate.kind, "params": candidate.params, "description": candidate.description,
            "status": status, "reason": reason, "effect": effect}


def restore_kept(run: Run, kept_changes: list[dict[str, Any]]) -> None:
    """Re-apply the last kept schema changes (knob values arrive through the start config; kept
    code patches stay applied in the work tree)."""
    for kept in kept_changes:
        if kept["kind"] in KNOB_KINDS or kept["kind"] == "code_patch":
            continue
        candidate = Candidate(kind=kept["kind"], params=kept["params"], description=kept["description"],
                              endpoint=kept.get("endpoint"))
        change_id, _ = apply_change(run, candidate, restoring=True)
        mark_change(run.store, change_id, "kept", reason=RESTORED_REASON)


def kept_changes(run: Run, restored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kept state to store: what was restored plus what this run kept."""
    out = {json_key(c): c for c in restored}
    for c in run.changes:
        if c["status"] == "kept":
            out[json_key(c)] = {"kind": c["kind"], "params": c["params"], "description": c["description"]}
    return list(out.values())


def json_key(change: dict[str, Any]) -> str:
    return Candidate(kind=change["kind"], params=change["params"], description="").key()


def revert_unsettled(run: Run) -> None:
    """After an error mid-change: undo this run's applied-but-unsettled changes on the live target."""
    for row in open_changes(run.store, run.spec.name):
        if row["run_id"] == run.run_id and row["undo"]:
            try:
                revert_change(run.store, run.rt, row["change_id"], row["kind"], row["undo"], "run failed mid-change")
            except Exception:  # noqa: BLE001 - it stays `applied`: the next run refuses, `perfagents revert` retries
                pass
