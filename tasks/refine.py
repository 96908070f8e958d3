"""Comprehensive scope: an adaptive multi-objective search over the knobs (tasks/search/).

The search screens around the kept configuration first (``KnobSearch.screen_around``: one knob
moved at a time, then the moves that helped combined, or made again from the one that helped),
then its sampler proposes the rest.
Each trial is one journaled `set_config` change from the kept configuration, measured in one
window and then reverted, so the target is always one change away from its kept state. After
the search, the compromise point (KnobSearch.choose: goals first, then cost) is applied and
kept only if its windows beat the kept state's by quick-win's rule (tasks/decisions/rule.py).

The search measures without agents (SEARCH_AGENTS): its windows need the load's numbers, not
findings, and the profilers cost the target latency (p95 x1.26 in benchmarks/agents_overhead.py)
and add noise. The kept state it compares with is measured the same way (its own A/A windows,
at least MIN_KEPT_AA_WINDOWS), as was the exhaustive grid it is judged against, and as the
baseline is: every window that decides or reports is agent-free.

Confirming the choice: the point chosen is the best of single windows, so its one window is
the luckiest of several draws (the winner's curse). That window is held out: the choice is
measured again in a fresh window (unless the budget has no room for one, when the trial window
is all there is, and the decision uses it). It is compared with all the kept state's A/A windows
by the hierarchical bootstrap over windows (tasks/decisions/effect.py), each window of it a
look of quick-win's sequential rule. Besides the total p95, a point whose total cannot tell is
kept when some endpoints are faster and none slower (``judge_choice``): a response cache can
cut the catalog's p95 several-fold while the total's p95 moves within a window's noise. While the comparison is
undecided, the chosen point is measured again, each time followed by another kept-state window
so that drift cancels, up to CONFIRM_WINDOWS times; the search keeps that many iterations of
its budget back for it (unless the budget is too small to run MIN_TRIALS trials besides).

Memoization across runs: unless the user asks to re-measure (``Request.remeasure``), the
search starts from the search windows of earlier runs of the same target and code version
that were measured in the same state: search window labels carry a key of the kept schema
changes and the load shape (``search-<key>-<n>``), and only windows with this run's key are
reused. A configuration known only from history is never adopted on history's numbers: if
the search chooses it, it is measured in this run first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from tasks import progress
from tasks.analysis.compare import check_quality
from tasks.analysis.cost import usd_per_hour
from tasks.analysis.noise import AdaptiveNoise
from tasks.analysis.stats import window_stats
from tasks.changes import KNOB_KINDS  # part of a window's config; every other kept change is state
from tasks.changes.journal import mark_change
from tasks.decisions.effect import between_tau
from tasks.decisions.effect import window_stats as effect_window_stats
from tasks.decisions.rule import PRIMARY, TAIL_GUARD, judge, judge_endpoints
from tasks.errors import PerfagentsError
from tasks.findings import Candidate
from tasks.loop import NOISE_FLOOR_MIN, apply_change, kept_changes, measure, revert_applied
from tasks.run import Run
from tasks.search.history import RESPONSES_EXPECTATION, SEARCH_LABEL_PREFIX, history_rows
from tasks.search.knob_search import KnobSearch
from tasks.search.space import config_key
from tasks.spec import LoadSpec
from tasks.store import dumps
from tasks.window import Window

MAX_TRIALS = 12  # a ceiling; the budget usually ends the search first
MAX_KEPT_AA_WINDOWS = 3  # extra A/A windows of the kept state for the search's own noise floor
# At least 3, so that the spread between windows is part of the floor (tasks/analysis/noise.py): two
# windows can agree by chance, while the grid's 96 windows show an 11% standard deviation of one
# window's p95; with 2, a lucky window of a twice-as-costly configuration was adopted.
MIN_KEPT_AA_WINDOWS = 3
SEARCH_AGENTS: list[Any] = []  # the search's windows run no agents (module docstring)
CONFIRM_WINDOWS = 2  # extra windows of the chosen point (each with a kept-state window) while undecided
MIN_TRIALS = 3  # a budget with room for fewer trials besides the confirmation reserve keeps no reserve
KEPT_AA_LABEL = "aa-kept-"  # not "search-...": history must not take them for search trials
STATE_KEY_HEX = 8  # hex digits of the state key in search window labels


def state_key(kept: Iterable[Mapping[str, Any]], load: LoadSpec) -> str:
    """A short key of what a window's config does not show: the kept schema changes (any order)
    and the load shape (windows measured another way are not comparable)."""
    schema = sorted(dumps({"kind": c["kind"], "params": c["params"]}) for c in kept if c["kind"] not in KNOB_KINDS)
    payload = dumps({"schema": schema, "load": load.model_dump(mode="json")})
    return hashlib.sha256(payload.encode()).hexdigest()[:STATE_KEY_HEX]


def search_label_prefix(run: Run) -> str:
    """``search-<key>-``: the label prefix of this run's search windows, in its current kept state."""
    return f"{SEARCH_LABEL_PREFIX}{state_key(kept_changes(run, run.restored), run.spec.load)}-"


def _objectives(run: Run, stats: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    return {**{k: v for k, v in stats["total"].items() if isinstance(v, int | float)},
            "usd_per_hour": usd_per_hour(run.spec, config)}


def _trial(run: Run, config: dict[str, Any], label: str, what: str) -> tuple[Window | None, list[str]]:
    """Apply one configuration, measure it (and its responses), put the kept configuration back."""
    candidate = Candidate(kind="set_config", params={"config": config}, description=f"{what}: {config}",
                          risk="medium")
    try:
        change_id, undo = apply_change(run, candidate)
    except PerfagentsError:
        return None, []
    run.ledger.iterations += 1
    try:
        window = measure(run, label, change_id, agents=SEARCH_AGENTS)
        if run.responses is None:
            return window, []
        wrong = run.responses.check(run.rt.handle.base_url)
        run.store.insert_validation(window.window_id, RESPONSES_EXPECTATION, not wrong, wrong)
        return window, [f"{RESPONSES_EXPECTATION}: {line}" for line in wrong]
    finally:
        revert_applied(run, change_id, candidate, undo, f"{what}: measured, then back to the kept state")


def _measure_point(run: Run, search: KnobSearch, config: dict[str, Any], label: str, what: str) -> Window | None:
    """One trial told to the search; the window if it measured the configuration, else None."""
    window, wrong = _trial(run, config, label, what)
    if window is None or not (window.valid or window.errors_only):
        search.discard(config)
        return None
    assert run.baseline is not None
    broken = check_quality(run.request.quality, window.stats, run.baseline.stats) if window.valid else ["errors"]
    search.tell(config, _objectives(run, window.stats, config), feasible=not (broken + wrong), stats=window.stats)
    return window


def seed_from_history(run: Run, search: KnobSearch, label_prefix: str) -> dict[str, Any]:
    """Tell the search what earlier runs measured in this state; the summary for the result."""
    assert run.baseline is not None
    version = run.store.run_code_version(run.run_id)
    summary = {"reused": 0, "label_prefix": label_prefix, "code_version": version, "remeasure": run.request.remeasure,
               "confirmed": None}
    if run.request.remeasure or version is None:  # asked, or the code version is unknown
        return summary
    rows = history_rows(run.store, run.spec, version, run.request.quality, run.baseline.stats,
                        label_prefix=label_prefix)
    summary["reused"] = search.from_history(rows)
    return summary


def refine_with_search(run: Run, *, max_trials: int = MAX_TRIALS, seed: int = 0) -> str | None:
    """Search the knob space within budget; store the Pareto front; keep the chosen point if it wins.

    Returns the name of the budget that ended the search, if one did.
    """
    assert run.current is not None and run.baseline is not None
    knobs = [n for n, k in run.spec.knobs.items() if k.needs_restart is False or run.rt.handle.process is not None]
    if not knobs:
        return None
    window_s = run.spec.load.duration_s + run.spec.load.warmup_s
    if (over := run.ledger.exhausted_by(next_load_s=window_s)) is not None:
        return over  # not one trial fits: no search, and no kept-state windows measured for it
    search = KnobSearch(run.spec, seed=seed)
    kept = dict(run.rt.config)
    noise_rel, kept_windows = kept_state_noise(run, window_s)
    kept_stats = pooled_stats(kept_windows)
    search.tell(kept, _objectives(run, kept_stats, kept), stats=kept_stats)
    search.screen_around(kept)
    kept_samples = [w.samples for w in kept_windows]
    windows: dict[str, Window] = {}
    prefix = search_label_prefix(run)
    history = seed_from_history(run, search, prefix)
    progress.emit("search_history", **history)
    exhausted = None
    trials = 0
    reserve = CONFIRM_WINDOWS
    while trials < max_trials:
        # a confirmation round is a window of the chosen point and one of the kept state
        if (over := run.ledger.exhausted_by(next_load_s=window_s * (1 + 2 * reserve), reserve=reserve)) is not None:
            if reserve and trials < MIN_TRIALS:
                reserve = 0  # too small a budget for a reserve: trials first, the choice judged as measured
                continue
            exhausted = over
            break
        config = search.suggest()
        if config is None:
            break
        trials += 1
        if (window := _measure_point(run, search, config, f"{prefix}{trials}", f"search trial {trials}")) is not None:
            windows[config_key(search.normalize(config))] = window
    chosen = search.choose(run.request.goals, run.request.quality, run.baseline.stats, noise_rel=noise_rel)
    if chosen is not None and config_key(chosen) != config_key(search.normalize(kept)):
        window = windows.get(config_key(chosen))
        if window is None:  # known only from history: the decision must use this run's samples
            history["confirmed"] = chosen
        # the window that made it the winner is the luckiest of several draws: held out when a fresh one fits
        fresh_fits = run.ledger.exhausted_by(next_load_s=2 * window_s) is None
        evidence = [window] if window is not None and not fresh_fits else []
        over = _settle_choice(run, search, chosen, evidence, kept_samples, noise_rel, _Labels(prefix, trials),
                              window_s)
        exhausted = exhausted or over
    run.sections["search_history"] = history
    run.sections["pareto"] = search.pareto()
    run.sections["search_points"] = [{"config": dict(p.config), "objectives": {o: p.objectives[o] for o in search.objectives},
                                   "feasible": p.feasible, "source": p.source} for p in search.measured()]
    return exhausted


def kept_state_noise(run: Run, window_s: float) -> tuple[float, list[Window]]:
    """The noise floor where the search measures, from A/A windows of the kept state; and those windows.

    The run's floor came from the unoptimized baseline, whose latencies (and their spread) can be
    far larger than the kept state's after quick-win; judged with it, a search among
    configurations a few milliseconds apart can tell none of them from the kept one. The windows
    are measured as the search measures (SEARCH_AGENTS), as many as AdaptiveNoise asks, at least
    MIN_KEPT_AA_WINDOWS, at most MAX_KEPT_AA_WINDOWS + 1 and within the budget. The kept state's
    agent-free windows so far (its A/A windows, or those that kept the last change) were measured
    alike in the same state: they count, and only the windows still needed are measured. Falls back to the run's floor when no second valid window can be had.
    """
    assert run.current is not None
    noise = AdaptiveNoise(min_windows=MIN_KEPT_AA_WINDOWS, max_windows=MAX_KEPT_AA_WINDOWS + 1,
                          can_afford=lambda: run.ledger.exhausted_by(next_load_s=window_s, next_iteration=False) is None)
    windows: list[Window] = []
    for window in run.noise.kept_aa[-(MAX_KEPT_AA_WINDOWS + 1):]:  # the kept state's agent-free windows so far
        if window.valid:
            noise.add(window.samples)
            windows.append(window)
    for n in range(1, MAX_KEPT_AA_WINDOWS + 2 - len(windows)):
        if len(noise.windows) >= 2 and not noise.need_more():
            break
        if not noise.can_afford():
            break
        window = measure(run, f"{KEPT_AA_LABEL}{n}", agents=SEARCH_AGENTS)
        if window.valid:
            noise.add(window.samples)
            windows.append(window)
    if not windows:
        return run.noise.p95_rel, [run.current]
    if len(windows) < 2:
        return run.noise.p95_rel, windows
    estimate = noise.estimate()
    run.noise.kept_state = {**estimate.to_dict(), "reason": noise.reason}
    progress.emit("noise", scope="kept state", p95_rel=estimate.noise_rel, windows=estimate.windows)
    return max(NOISE_FLOOR_MIN, estimate.noise_rel), windows


def pooled_stats(windows: list[Window]) -> dict[str, Any]:
    """Window stats of several windows' samples together."""
    if len(windows) == 1:
        return windows[0].stats
    return window_stats(pl.concat([w.samples for w in windows], how="vertical_relaxed"),
                        sum(w.duration_s for w in windows))


class _Labels:
    """Window labels after the search's trials: ``<prefix><n>`` for the chosen point, aa-kept-c<n> for the kept state."""

    def __init__(self, prefix: str, trials: int) -> None:
        self.prefix, self.n = prefix, trials

    def next(self) -> tuple[str, str]:
        self.n += 1
        return f"{self.prefix}{self.n}", f"{KEPT_AA_LABEL}c{self.n}"


def judge_choice(
    before: list[pl.DataFrame], after: list[pl.DataFrame], noise_rel: float | None = None,
) -> tuple[bool, bool, str, dict[str, Any] | None]:
    """(keep, settled, reason, effect) of the chosen point's windows against the kept state's.

    Quick-win's rule (tasks/decisions/rule.py), each confirmation window a look: kept when the
    total median is better and the total p95 not shown slower, or, the total undecided, when
    some endpoints are faster and none slower (``judge_endpoints``). Settled (no confirmation
    window would change it) when it is kept, when the total or an endpoint is worse, or when a
    gain worth keeping is ruled out. ``noise_rel`` is not used: the bootstrap carries the
    between-window spread itself.
    """
    counts = f"{len(after)} window(s) of it against {len(before)} of the kept state"
    tau, df = between_tau([effect_window_stats(before, PRIMARY, seed=5)])
    tau, df = tau or 0.0, max(df, 1)
    total = judge(before, after, metric=PRIMARY, prior_tau=tau, prior_df=df, look=len(after))
    verdict = total
    if total.outcome not in ("better", "worse"):
        verdict = judge_endpoints(before, after, metric=PRIMARY, total=total, prior_tau=tau, prior_df=df,
                                  look=len(after))
    if verdict.outcome == "better":
        tail_tau, tail_df = between_tau([effect_window_stats(before, TAIL_GUARD, seed=5)])
        tail = judge(before, after, metric=TAIL_GUARD, prior_tau=tail_tau or 0.0, prior_df=max(tail_df, 1))
        if tail.outcome == "worse":
            return False, True, f"{verdict.reason}; but {tail.reason} ({counts})", verdict.effect
    if verdict.outcome in ("better", "worse"):
        return verdict.outcome == "better", True, f"{verdict.reason} ({counts})", verdict.effect
    return False, total.outcome == "no_gain", f"{total.reason} ({counts})", total.effect


def _settle_choice(
    run: Run, search: KnobSearch, config: dict[str, Any], after: list[Window], before: list[pl.DataFrame],
    noise_rel: float, labels: _Labels, window_s: float,
) -> str | None:
    """Adopt the chosen point if its windows beat the kept state's; confirm while undecided (module docstring).

    Returns the name of a budget that stopped the confirmation, if one did.
    """
    effect: dict[str, Any] | None = None
    reason = "not measured in this run"
    for round_ in range(CONFIRM_WINDOWS + 1):
        if after:
            keep, settled, reason, effect = judge_choice(before, [w.samples for w in after], noise_rel)
            if keep:
                _adopt(run, config, after[-1], reason, effect)
                return None
            if settled:
                break
        if round_ == CONFIRM_WINDOWS:
            break
        if (over := run.ledger.exhausted_by(next_load_s=2 * window_s)) is not None:
            _not_adopted(run, config, f"{reason}; the {over} budget leaves no window to confirm it", effect)
            return over
        label, kept_label = labels.next()
        window = _measure_point(run, search, config, label, "confirming the search's choice")
        if window is None or not search.points[config_key(search.normalize(config))].feasible:
            why = "was rejected by the gate" if window is None else "broke a quality threshold"
            _not_adopted(run, config, f"a window of it measured to confirm it {why}", effect)
            search.chosen = None
            return None
        after.append(window)
        _pool_point(run, search, config, after)
        kept = measure(run, kept_label, agents=SEARCH_AGENTS)
        if kept.valid:
            before.append(kept.samples)
    _not_adopted(run, config, reason, effect)
    return None


def _pool_point(run: Run, search: KnobSearch, config: dict[str, Any], windows: list[Window]) -> None:
    """The search's point for a configuration measured in several windows: their pooled statistics."""
    stats = pooled_stats(windows)
    point = search.points[config_key(search.normalize(config))]
    point.objectives, point.stats = _objectives(run, stats, config), stats


def _not_adopted(run: Run, config: dict[str, Any], reason: str, effect: dict[str, Any] | None) -> None:
    run.changes.append({"kind": "set_config", "params": {"config": config}, "status": "reverted",
                        "description": f"search choice {config}", "reason": f"not adopted: {reason}",
                        "effect": effect})


def _adopt(run: Run, config: dict[str, Any], window: Window, reason: str, effect: dict[str, Any] | None) -> None:
    """Apply the chosen point for good; its last agent-free window becomes the current one (the
    baseline's windows are agent-free too, so the report compares like with like)."""
    candidate = Candidate(kind="set_config", params={"config": config}, description=f"search choice {config}")
    change_id, _ = apply_change(run, candidate)
    mark_change(run.store, change_id, "kept", reason=f"chosen from the Pareto front; {reason}", effect=effect)
    run.changes.append({"kind": "set_config", "params": {"config": config}, "status": "kept",
                        "description": candidate.description, "reason": reason, "effect": effect})
    run.current = window
