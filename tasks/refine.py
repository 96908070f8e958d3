"""Comprehensive scope: an adaptive multi-objective search over the knobs (tasks/search.py).

Each trial is one journaled `set_config` change from the kept configuration, measured in one
window and then reverted, so the target is always one change away from its kept state. After
the search, the compromise point (KnobSearch.choose: goals first, then cost) is applied and
kept only if its measured window beats the current one beyond the noise floor.

Memoization across runs: unless the user asks to re-measure (``Request.remeasure``), the
search starts from the search windows of earlier runs of the same target and code version
that were measured in the same state: search window labels carry a key of the kept schema
changes and the load shape (``search-<key>-<n>``), and only windows with this run's key are
reused. A configuration known only from history is never adopted on history's numbers: if
the search chooses it, it is measured once in this run first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from tasks import progress
from tasks.changes.journal import mark_change
from tasks.compare import check_quality, compare_windows, decide
from tasks.cost import usd_per_hour
from tasks.errors import PerfagentsError
from tasks.findings import Candidate
from tasks.loop import NOISE_FLOOR_MIN, apply_change, kept_changes, measure, revert_applied
from tasks.noise import AdaptiveNoise
from tasks.run import Run
from tasks.search import (
    RESPONSES_EXPECTATION,
    SEARCH_LABEL_PREFIX,
    KnobSearch,
    config_key,
    history_rows,
)
from tasks.spec import LoadSpec
from tasks.store import dumps, now
from tasks.window import Window

MAX_TRIALS = 12  # a ceiling; the budget usually ends the search first
MAX_KEPT_AA_WINDOWS = 3  # extra A/A windows of the kept state for the search's own noise floor
KEPT_AA_LABEL = "aa-kept-"  # not "search-...": history must not take them for search trials
STATE_KEY_HEX = 8  # hex digits of the state key in search window labels
KNOB_KINDS = ("set_knob", "set_config")  # part of a window's config; every other kept change is state


def state_key(kept: Iterable[Mapping[str, Any]], load: LoadSpec) -> str:
    """A short key of what a window's config does not show: the kept schema changes (any order)
    and the load shape (windows measured another way are not comparable)."""
    schema = sorted(dumps({"kind": c["kind"], "params": c["params"]}) for c in kept if c["kind"] not in KNOB_KINDS)
    payload = dumps({"schema": schema, "load": load.model_dump(mode="json")})
    return hashlib.sha256(payload.encode()).hexdigest()[:STATE_KEY_HEX]


def search_label_prefix(run: Run) -> str:
    """``search-<key>-``: the label prefix of this run's search windows, in its current kept state."""
    return f"{SEARCH_LABEL_PREFIX}{state_key(kept_changes(run, run.restored), run.spec.load)}-"


def _objectives(run: Run, window: Window, config: dict[str, Any]) -> dict[str, float]:
    return {**{k: v for k, v in window.stats["total"].items() if isinstance(v, int | float)},
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
        window = measure(run, label, change_id)
        if run.responses is None:
            return window, []
        wrong = run.responses.check(run.rt.handle.base_url)
        run.store.insert_row("validations", {"window_id": window.window_id, "expectation": RESPONSES_EXPECTATION,
                                             "success": not wrong, "observed": dumps(wrong), "checked_at": now()})
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
    search.tell(config, _objectives(run, window, config), feasible=not (broken + wrong), stats=window.stats)
    return window


def seed_from_history(run: Run, search: KnobSearch, label_prefix: str) -> dict[str, Any]:
    """Tell the search what earlier runs measured in this state; the summary for the result."""
    assert run.baseline is not None
    found = run.store.rows("SELECT code_version FROM runs WHERE run_id = ?", [run.run_id])
    version = found[0]["code_version"] if found else None
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
    search = KnobSearch(run.spec, seed=seed)
    kept = dict(run.rt.config)
    search.tell(kept, _objectives(run, run.current, kept), stats=run.current.stats)
    windows: dict[str, Window] = {config_key(search.normalize(kept)): run.current}
    prefix = search_label_prefix(run)
    history = seed_from_history(run, search, prefix)
    progress.emit("search_history", **history)
    window_s = run.spec.load.duration_s + run.spec.load.warmup_s
    noise_rel = kept_state_noise(run, window_s)
    exhausted = None
    trials = 0
    while trials < max_trials:
        if (exhausted := run.ledger.exhausted_by(next_load_s=window_s)) is not None:
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
            window, exhausted = _confirm(run, search, chosen, f"{prefix}{trials + 1}", window_s, exhausted)
        if window is not None:
            _adopt(run, chosen, window, noise_rel)
    run.extra["search_history"] = history
    run.extra["pareto"] = search.pareto()
    return exhausted


def kept_state_noise(run: Run, window_s: float) -> float:
    """The noise floor where the search measures: A/A windows of the kept state.

    The run's floor came from the unoptimized baseline, whose latencies (and their spread) can be
    far larger than the kept state's after quick-win; judged with it, a search among
    configurations a few milliseconds apart can tell none of them from the kept one. The current
    window is the first A/A window; more come as AdaptiveNoise asks, within MAX_KEPT_AA_WINDOWS
    and the budget. Falls back to the run's floor when no second valid window can be had.
    """
    assert run.current is not None
    noise = AdaptiveNoise(max_windows=MAX_KEPT_AA_WINDOWS + 1,
                          can_afford=lambda: run.ledger.exhausted_by(next_load_s=window_s, next_iteration=False) is None)
    noise.add(run.current.samples)
    for n in range(1, MAX_KEPT_AA_WINDOWS + 1):
        if len(noise.windows) >= 2 and not noise.need_more():
            break
        if not noise.can_afford():
            break
        window = measure(run, f"{KEPT_AA_LABEL}{n}")
        if window.valid:
            noise.add(window.samples)
    if len(noise.windows) < 2:
        return run.noise_rel
    estimate = noise.estimate()
    run.extra["noise_kept_state"] = {**estimate.to_dict(), "reason": noise.reason}
    progress.emit("noise", scope="kept state", p95_rel=estimate.noise_rel, windows=estimate.windows)
    return max(NOISE_FLOOR_MIN, estimate.noise_rel)


def _confirm(
    run: Run, search: KnobSearch, config: dict[str, Any], label: str, window_s: float, exhausted: str | None,
) -> tuple[Window | None, str | None]:
    """Measure a configuration chosen on history's numbers once in this run; None if it cannot be adopted."""
    if (over := run.ledger.exhausted_by(next_load_s=window_s)) is not None:
        _not_adopted(run, config, f"measured only in an earlier run; the {over} budget leaves no window "
                                  "to measure it in this one", None)
        return None, over
    window = _measure_point(run, search, config, label, "search choice from history")
    if window is None or not search.points[config_key(search.normalize(config))].feasible:
        reason = "its window in this run was rejected" if window is None else "it broke a quality threshold in this run"
        _not_adopted(run, config, f"measured only in an earlier run, and {reason}", None)
        search.chosen = None
        return None, exhausted
    return window, exhausted


def _not_adopted(run: Run, config: dict[str, Any], reason: str, effect: dict[str, Any] | None) -> None:
    run.changes.append({"kind": "set_config", "params": {"config": config}, "status": "reverted",
                        "description": f"search choice {config}", "reason": f"not adopted: {reason}",
                        "effect": effect})


def _adopt(run: Run, config: dict[str, Any], window: Window, noise_rel: float) -> None:
    """Apply the chosen point for good if its measured window beats the current one."""
    assert run.current is not None
    effect = compare_windows(run.current.samples, window.samples, endpoint=None, metric="p95_ms")
    keep, reason = decide(effect, noise_rel)
    if not keep:
        _not_adopted(run, config, reason, effect)
        return
    candidate = Candidate(kind="set_config", params={"config": config}, description=f"search choice {config}")
    change_id, _ = apply_change(run, candidate)
    mark_change(run.store, change_id, "kept", reason=f"chosen from the Pareto front; {reason}", effect=effect)
    run.changes.append({"kind": "set_config", "params": {"config": config}, "status": "kept",
                        "description": candidate.description, "reason": reason, "effect": effect})
    run.current = window
