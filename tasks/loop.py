"""The steps of the closed loop as plain functions (the flow wraps each in a Prefect task)."""

from __future__ import annotations

from typing import Any

import polars as pl

from tasks import progress
from tasks.changes.journal import (
    apply_candidate,
    mark_change,
    open_changes,
    plan_change,
    revert_change,
)
from tasks.compare import (
    MIN_ENDPOINT_SAMPLES,
    check_goals,
    check_quality,
    compare_windows,
    decide,
    decide_endpoints,
)
from tasks.correctness import ResponseCheck
from tasks.errors import PerfagentsError
from tasks.findings import Candidate, Finding, stronger
from tasks.noise import AdaptiveNoise, estimate_noise, estimate_rps_noise
from tasks.optimizer import candidates_from_findings, knob_candidates, rank_candidates
from tasks.run import Run
from tasks.window import Window, measure_window

NOISE_FLOOR_MIN = 0.02  # never trust a noise floor below 2 %
NOISE_FLOOR_ASSUMED = 0.10  # used when only one baseline window could be measured
MAX_BASELINE_WINDOWS = 6  # A/A windows plus re-measured invalid ones
STATE_MOVED = 2.0  # a kept change that moves p95 by this factor makes a new state: its floor is measured again


def measure(run: Run, label: str, change_id: str | None = None, *, agents: list[Any] | None = None) -> Window:
    """One window of the current state, with the run's agents unless ``agents`` says otherwise."""
    return measure_window(run.store, run.run_id, run.rt, label, agents=run.agents if agents is None else agents,
                          ledger=run.ledger,
                          max_error_rate=run.request.max_error_rate, change_id=change_id,
                          allow_remote=run.request.allow_remote)


def measure_baseline(run: Run) -> Window:
    """A/A windows on the unchanged target, as many as the observed variance needs (tasks/noise.py).

    The last valid window is the baseline; their spread is the noise floor. When the budget
    leaves room for one window only, the noise floor is assumed and the report says so.
    """
    window_s = run.spec.load.duration_s + run.spec.load.warmup_s
    noise = AdaptiveNoise(can_afford=lambda: run.ledger.exhausted_by(next_load_s=window_s, next_iteration=False) is None)
    wants_responses = any(q.metric == "responses" for q in run.request.quality)
    if wants_responses:
        run.responses = ResponseCheck.from_spec(run.spec, run.spec.correctness)
    windows: list[Window] = []
    while True:
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
    if not valid:
        raise PerfagentsError(f"no valid baseline window: {'; '.join(windows[-1].reasons)}")
    run.baseline = run.current = valid[-1]
    run.baseline_aa = run.aa_windows = valid
    if len(valid) >= 2:
        estimate = noise.estimate()
        run.noise_rel = max(NOISE_FLOOR_MIN, estimate.noise_rel)
        run.noise_rps_rel = max(NOISE_FLOOR_MIN, estimate_rps_noise(noise.windows))
        run.extra["noise"] = {**estimate.to_dict(), "rps_rel": run.noise_rps_rel, "reason": noise.reason}
    else:
        run.noise_rel = run.noise_rps_rel = NOISE_FLOOR_ASSUMED
        run.extra["noise"] = {"note": "one valid baseline window: noise floor assumed, not measured"}
    run.baseline_noise_rel = run.noise_rel
    run.findings = list(run.current.findings)
    return run.baseline


def next_candidate(run: Run) -> Candidate | None:
    """The best untried change, from the current window's findings and the knobs."""
    assert run.current is not None
    candidates = candidates_from_findings(run.current.findings)
    if run.request.scope == "comprehensive":  # the knobs are left to the search (tasks/refine.py)
        candidates = [c for c in candidates if c.kind not in ("set_knob", "set_config")]
    else:
        candidates += knob_candidates(run.spec, run.rt.config, run.current.findings)
    ranked = rank_candidates(candidates, run.tried)
    return ranked[0] if ranked else None


def apply_change(run: Run, candidate: Candidate) -> tuple[str, dict[str, Any]]:
    """Journal, then apply; returns the change id and its exact undo. A failed apply is journaled."""
    run.seq += 1
    run.tried.add(candidate.key())
    change_id = plan_change(run.store, run.run_id, run.spec.name, run.seq, candidate)
    try:
        undo = apply_candidate(run.store, run.rt, change_id, candidate)
    except PerfagentsError as exc:
        run.changes.append(_row(candidate, "failed", str(exc), None))
        raise
    return change_id, undo


def revert_applied(run: Run, change_id: str, candidate: Candidate, undo: dict[str, Any], reason: str) -> None:
    """Put the kept state back after a change that was only measured (a search trial)."""
    revert_change(run.store, run.rt, change_id, candidate.kind, undo, reason)


def evaluate_change(run: Run, candidate: Candidate, window: Window) -> tuple[bool, str, dict[str, Any] | None]:
    """Keep only a valid window with a significant gain beyond the noise floor and quality held."""
    assert run.current is not None and run.baseline is not None
    if window.errors_only:
        return False, f"quality threshold broken: {'; '.join(window.reasons)}", None
    if not window.valid:
        return False, f"window rejected by the gate: {'; '.join(window.reasons)}", None
    broken = check_quality(run.request.quality, window.stats, run.baseline.stats)
    endpoint = candidate.endpoint if candidate.endpoint in window.stats["endpoints"] else None
    effect = compare_windows(run.current.samples, window.samples, endpoint=endpoint, metric="p95_ms")
    if run.responses is not None:
        broken += [f"responses==baseline: {line}" for line in run.responses.check(run.rt.handle.base_url)]
    if broken:
        return False, f"quality threshold broken: {'; '.join(broken)}", effect
    keep, reason = decide(effect, endpoint_noise(run, endpoint))
    if not keep and candidate.endpoint is None:
        throughput = compare_windows(run.current.samples, window.samples, endpoint=None, metric="rps")
        keep_rps, reason_rps = decide(throughput, run.noise_rps_rel, lower_is_better=False)
        if keep_rps:
            return True, reason_rps, throughput
        keep_some, reason_some, effect_some = decide_endpoints(run.current.samples, window.samples, run.noise_rel)
        if keep_some:
            return True, reason_some, effect_some
        if effect_some is not None:  # an endpoint got slower: say so
            reason = f"{reason}; {reason_some}"
    return keep, reason, effect


def endpoint_noise(run: Run, endpoint: str | None) -> float:
    """The p95 noise floor of what a change is judged on: for an endpoint, its own.

    The total's floor can be far from an endpoint's: the unindexed shop's total p95 falls on
    either side of customer_orders' slow tail (floor 0.3-1.4) while the catalog's p95 moves a
    few percent. Computed once per endpoint and state from the current state's A/A windows
    (``noise_floor`` in --json lists them, ``after_changes`` for a re-measured state); the
    total's floor when there are fewer than two windows or MIN_ENDPOINT_SAMPLES requests of
    the endpoint in one of them.
    """
    if endpoint is None:
        return run.noise_rel
    noise = run.extra.setdefault("noise", {})
    state = noise["after_changes"][-1] if noise.get("after_changes") else noise
    floors = state.setdefault("endpoint_p95_rel", {})
    if endpoint not in floors:
        frames = [w.samples.filter(pl.col("endpoint") == endpoint) for w in run.aa_windows]
        if len(frames) < 2 or min(f.height for f in frames) < MIN_ENDPOINT_SAMPLES:
            floors[endpoint] = run.noise_rel
        else:
            floors[endpoint] = max(NOISE_FLOOR_MIN, estimate_noise(frames).noise_rel)
    return floors[endpoint]


def settle_change(
    run: Run, change_id: str, undo: dict[str, Any], candidate: Candidate, window: Window,
) -> dict[str, Any]:
    """Keep the change (the window becomes current) or revert it exactly; journal either way."""
    keep, reason, effect = evaluate_change(run, candidate, window)
    if keep:
        mark_change(run.store, change_id, "kept", reason=reason, effect=effect)
        assert run.current is not None
        before, after = run.current.stats["total"]["p95_ms"], window.stats["total"]["p95_ms"]
        if before > 0 and after > 0 and max(before / after, after / before) >= STATE_MOVED:
            run.noise_stale = True
        run.current = window
    else:
        revert_change(run.store, run.rt, change_id, candidate.kind, undo, reason)
    row = _row(candidate, "kept" if keep else "reverted", reason, effect)
    progress.emit("change", **row)
    run.changes.append(row)
    _merge_findings(run, window.findings)
    return row


def refresh_noise(run: Run, window_s: float) -> None:
    """Measure the floor again in the state a kept change made when it moved p95 several-fold.

    The baseline's floor is the unoptimized state's: the unindexed shop's total p95 falls on
    either side of customer_orders' slow tail (floor 0.33-2.1) while the indexed shop's moves
    ~0.13, so a later change judged with the old floor must beat it several times over (the
    category index's x0.58 on the catalog was reverted so). The A/A windows are fresh (with the
    run's agents, as the baseline's): the kept change's own window is left out, since it was
    kept for reading well (make run: 16.1 ms, then 20.7, 18.8, 20.5). As many as AdaptiveNoise
    asks, while the budget leaves room for them (two at least) and the change after; with fewer
    than two valid ones the old floor stays. Called lazily, before the next change: a run that
    ends after the kept change measures nothing more.
    """
    run.noise_stale = False
    valid: list[Window] = []

    def fits() -> bool:  # room for the windows a floor still needs (two at least), and the change after
        needed = max(2 - len(valid), 1) + 1
        return run.ledger.exhausted_by(next_load_s=needed * window_s, next_iteration=False) is None

    noise = AdaptiveNoise(can_afford=fits)
    n = 0
    while (len(noise.windows) < 2 or noise.need_more()) and n < MAX_BASELINE_WINDOWS and noise.can_afford():
        n += 1
        window = measure(run, f"aa-{run.seq}-{n}")
        if window.valid:
            noise.add(window.samples)
            valid.append(window)
    if len(valid) < 2:
        return
    estimate = noise.estimate()
    run.current, run.aa_windows = valid[-1], valid
    run.noise_rel = max(NOISE_FLOOR_MIN, estimate.noise_rel)
    run.noise_rps_rel = max(NOISE_FLOOR_MIN, estimate_rps_noise(noise.windows))
    state = {"after_change": run.seq, **estimate.to_dict(), "p95_rel": run.noise_rel,
             "rps_rel": run.noise_rps_rel, "reason": noise.reason}
    run.extra.setdefault("noise", {}).setdefault("after_changes", []).append(state)
    progress.emit("noise", scope=f"state after change {run.seq}", p95_rel=estimate.noise_rel, windows=estimate.windows)
    _merge_findings(run, [f for w in valid for f in w.findings])


def goals_met(run: Run) -> list[dict[str, Any]]:
    assert run.current is not None and run.baseline is not None
    return check_goals(run.request.goals, run.current.stats, run.baseline.stats)


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
    """Re-apply the last kept schema changes (knob values arrive through the start config)."""
    for kept in kept_changes:
        if kept["kind"] in ("set_knob", "set_config"):
            continue
        candidate = Candidate(kind=kept["kind"], params=kept["params"], description=kept["description"],
                              endpoint=kept.get("endpoint"))
        change_id, _ = apply_change(run, candidate)
        mark_change(run.store, change_id, "kept", reason="restored from the last kept state")


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
            except PerfagentsError:
                pass
