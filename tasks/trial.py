"""One change on trial: windows with it (B) against windows without it (A), until the rule settles.

The first look compares the change's first window with the kept state's own windows (its A/A
windows, or the windows that kept the last change). While the rule says "undecided"
(tasks/decisions/rule.py) and looks and budget remain, another pair is measured: a change
that can be switched (an index: drop and build again; a live knob: set it back and forth; a code
patch or a restart knob: revert or apply, then restart the target) is switched off for a fresh A
window and on again for a B window, so that drift over the trial cancels (A B A B). Every switch is journaled
like the first apply. The decision windows run without agents: profiling happens in
windows of its own, and its cost stays out of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.changes.journal import apply_candidate, revert_change
from tasks.decisions.effect import between_tau, window_stats
from tasks.decisions.quality import broken_quality
from tasks.decisions.regime import regime
from tasks.decisions.rule import (
    MAX_LOOKS,
    MIN_LOOKS,
    PRIMARY,
    TAIL_GUARD,
    Verdict,
    futile,
    judge,
    judge_endpoints,
)
from tasks.errors import PerfagentsError
from tasks.findings import Candidate
from tasks.pages import broken_page_vitals
from tasks.run import Run
from tasks.window import Window

MAX_STATE_WINDOWS = 4  # the kept state's newest windows a first look compares with
# A change aimed at an endpoint is judged on it when each arm's windows hold this many of its
# requests on average, and none holds fewer than half as many. Requiring it of every window sent
# an index worth x0.03 on its endpoint to the total's median (x0.82) when a 10 s warm-up left one
# A/A window 44 of the endpoint's requests (a quick-win run, 2026-12-05).
MIN_ENDPOINT_SAMPLES = 50


@dataclass
class Trial:
    candidate: Candidate
    change_id: str
    undo: dict[str, Any]
    before: list[Window]
    after: list[Window] = field(default_factory=list)
    fresh_before: int = 0  # A windows measured during the trial (valid or not)
    fresh: list[Window] = field(default_factory=list)  # the valid ones
    looks: int = 0
    on: bool = True
    verdict: Verdict | None = None
    judged_on: tuple[str, str | None, str, float] | None = None  # (metric, endpoint, regime, busy share), fixed at the first look
    page_loads: Any = None  # the pages loaded with the change on, when a quality threshold names a vital

    @property
    def windows(self) -> int:
        """Windows this decision measured (B windows and fresh A windows)."""
        return len(self.after) + self.fresh_before


def switchable(run: Run, candidate: Candidate) -> bool:
    """Can the change be switched off and on again for interleaved A and B windows?

    An index is dropped and built again, a live knob set back and forth; a change that needs a
    restart (a code patch, a restart knob) is switched with a restart of the target perfagents
    started, so both arms start from the same cold process. Without the interleaving its B windows
    were compared with the kept state's older, long-warm windows: drift between them and the
    restart's own cold state decided the trial (on an unseen Flask app under saturation a correct
    N+1 patch ended undecided at rps x0.925 [0.69, 1.23]).
    """
    if candidate.kind == "create_index":
        return True
    if candidate.kind == "set_knob":
        knob = run.spec.knobs.get(str(candidate.params.get("knob")))
        if knob is None:
            return False
        return knob.needs_restart is False or run.rt.handle.process is not None
    if candidate.kind == "code_patch":
        return run.rt.handle.process is not None
    return False


def start_trial(run: Run, candidate: Candidate, change_id: str, undo: dict[str, Any]) -> Trial:
    return Trial(candidate, change_id, undo, before=list(run.noise.kept_aa[-MAX_STATE_WINDOWS:]))


def state_regime(run: Run, windows: list[Window]) -> tuple[str, float]:
    return regime([w.samples for w in windows], [w.duration_s for w in windows], run.spec.load.users)


def _target(run: Run, trial: Trial, kind: str) -> tuple[str, str | None]:
    """(metric, endpoint) the change is judged on in the kept state's regime: the median latency,
    or for a saturated target the throughput; of the endpoint the change aims at when its
    windows have enough of its requests (under a closed-loop load an endpoint's throughput is its
    share of the total, so a change that frees the target's workers shows there too), else of
    the total."""
    metric = "rps" if kind == "saturated" else PRIMARY
    endpoint = trial.candidate.endpoint
    if endpoint is not None and all(_enough_requests(arm, endpoint) for arm in (trial.before, trial.after)):
        return metric, endpoint
    return metric, None


def _enough_requests(windows: list[Window], endpoint: str) -> bool:
    counts = [w.stats["endpoints"].get(endpoint, {}).get("requests", 0) for w in windows]
    return bool(counts) and sum(counts) >= MIN_ENDPOINT_SAMPLES * len(counts) and 2 * min(counts) >= MIN_ENDPOINT_SAMPLES


def prior_tau(windows: list[Window], metric: str, endpoint: str | None) -> tuple[float, int]:
    """(tau, df): the between-window spread of a state's windows; it stands in while arms are too small."""
    tau, df = between_tau([window_stats([w.samples for w in windows], metric, endpoint=endpoint, seed=5)])
    return tau or 0.0, max(df, 1)


def look(run: Run, trial: Trial, window: Window) -> Verdict:
    """Add the trial's newest B window and apply the rule."""
    trial.looks += 1
    if window.errors_only:
        return _settle(trial, Verdict("worse", f"quality threshold broken: {'; '.join(window.reasons)}", None))
    if not window.valid:  # a bad measurement says nothing of the change: look again while looks last
        reason = f"a window with it was rejected by the gate: {'; '.join(window.reasons)}"
        outcome = "no_gain" if trial.looks >= MAX_LOOKS or not trial.after else "undecided"
        previous = trial.verdict.effect if trial.verdict is not None else None
        return _settle(trial, Verdict(outcome, reason if outcome == "no_gain" else f"{reason}; measuring again",
                                      previous))
    trial.after.append(window)
    if trial.judged_on is None:  # one metric and endpoint per trial: switching them would add tests
        kind, share = state_regime(run, trial.before)
        metric, endpoint = _target(run, trial, kind)
        trial.judged_on = (metric, endpoint, kind, share)
    metric, endpoint, kind, share = trial.judged_on
    before, after = [w.samples for w in trial.before], [w.samples for w in trial.after]
    state = trial.before if len(trial.before) >= 2 else [*run.noise.baseline_aa, *trial.before]
    tau, df = prior_tau(state, metric, endpoint)  # a one-window kept state borrows the baseline's spread
    verdict = judge(before, after, metric=metric, endpoint=endpoint, prior_tau=tau, prior_df=df, regime=kind,
                    look=trial.looks)
    if verdict.effect is not None:
        verdict.effect["busy_share"] = share
    verdict = futile(verdict, trial.looks)
    final = trial.looks >= MAX_LOOKS
    if verdict.outcome in ("no_gain", "undecided") and trial.candidate.endpoint is None and kind == "latency" \
            and (final or verdict.outcome == "no_gain"):
        verdict = judge_endpoints(before, after, metric=metric, prior_tau=tau, prior_df=df, total=verdict,
                                  min_samples=MIN_ENDPOINT_SAMPLES)
    if verdict.outcome == "better" and metric == PRIMARY:
        verdict = _tail_guard(state, before, after, verdict)
    elif metric == "rps" and verdict.effect is not None:
        _tail_effect(state, before, after, verdict)  # a throughput decision reports its p95 too; it does not decide
    if verdict.outcome == "better":
        broken = broken_quality(run.request.quality, after, [w.samples for w in run.noise.baseline_aa],
                                run.baseline.stats if run.baseline else None, prior_tau=tau)
        if run.responses is not None:
            broken += [f"responses==baseline: {line}" for line in run.responses.check(run.rt.handle.base_url)]
        vitals, trial.page_loads = broken_page_vitals(run)
        broken += vitals
        if broken:
            verdict = Verdict("worse", f"quality threshold broken: {'; '.join(broken)}", verdict.effect)
    return _settle(trial, verdict)


def _tail_guard(state: list[Window], before: list[Any], after: list[Any], verdict: Verdict) -> Verdict:
    """A median gain is kept only if the same endpoint's p95 is not shown slower (same rule, same
    level); the p95 effect joins the verdict's effect either way."""
    tail = _tail_effect(state, before, after, verdict)
    if tail.outcome == "worse":
        return Verdict("worse", f"{verdict.reason}; but {tail.reason}", verdict.effect)
    return verdict


def _tail_effect(state: list[Window], before: list[Any], after: list[Any], verdict: Verdict) -> Verdict:
    """The same endpoint's p95 judged by the same rule; its effect joins the verdict's as ``tail``."""
    assert verdict.effect is not None
    endpoint = None if verdict.effect["endpoint"] in (None, "total") else verdict.effect["endpoint"]
    tau, df = prior_tau(state, TAIL_GUARD, endpoint)
    tail = judge(before, after, metric=TAIL_GUARD, endpoint=endpoint, prior_tau=tau, prior_df=df)
    if tail.effect is not None:
        verdict.effect["tail"] = {k: tail.effect[k] for k in ("metric", "ratio", "ci95", "before", "after")}
    return tail


def _settle(trial: Trial, verdict: Verdict) -> Verdict:
    trial.verdict = verdict
    return verdict


def trial_load_s(run: Run, candidate: Candidate, window_s: float) -> float:
    """Load seconds a trial needs to reach its first ordinary decision (``MIN_LOOKS`` looks):
    the first window, then per look an A and a B window (one B window when it cannot be switched).

    A trial the budget cannot carry that far can settle only on a >2x effect and would mostly
    end undecided and reverted, its windows spent for nothing: the loop stops before it instead.
    """
    per_look = 2 if switchable(run, candidate) else 1
    return window_s * (1 + (MIN_LOOKS - 1) * per_look)


def can_look_again(run: Run, trial: Trial, window_s: float) -> bool:
    if trial.verdict is None or trial.verdict.settled or trial.looks >= MAX_LOOKS:
        return False
    windows = 2 if switchable(run, trial.candidate) else 1
    return run.ledger.exhausted_by(next_load_s=windows * window_s, next_iteration=False) is None


def switch(run: Run, trial: Trial, on: bool) -> bool:
    """Switch the change off (for a fresh A window) or on again; journaled like the first apply.

    A switch that fails ends the trial (verdict ``worse``, with the reason) instead of the run.
    """
    try:
        if on:
            trial.undo = apply_candidate(run.store, run.rt, trial.change_id, trial.candidate)
        else:
            revert_change(run.store, run.rt, trial.change_id, trial.candidate.kind, trial.undo,
                          "switched off for an interleaved A window")
    except PerfagentsError as exc:
        trial.on = trial.on and not on  # a failed apply is undone by apply_candidate; a failed revert left it on
        _settle(trial, Verdict("worse", f"could not switch it {'on' if on else 'off'} again: {exc}",
                               trial.verdict.effect if trial.verdict else None))
        return False
    trial.on = on
    return True


def add_before(trial: Trial, window: Window) -> None:
    """A fresh A window measured during the trial (an invalid one is not used)."""
    trial.fresh_before += 1
    if window.valid:
        trial.before.append(window)
        trial.fresh.append(window)
