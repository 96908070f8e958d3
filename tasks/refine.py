"""Comprehensive scope: an adaptive multi-objective search over the knobs (tasks/search.py).

Each trial is one journaled `set_config` change from the kept configuration, measured in one
window and then reverted, so the target is always one change away from its kept state. After
the search, the compromise point (KnobSearch.choose: goals first, then cost) is applied and
kept only if its measured window beats the current one beyond the noise floor.
"""

from __future__ import annotations

from typing import Any

from tasks.changes.journal import mark_change
from tasks.compare import check_quality, compare_windows, decide
from tasks.cost import usd_per_hour
from tasks.errors import PerfagentsError
from tasks.findings import Candidate
from tasks.loop import apply_change, measure, revert_applied
from tasks.run import Run
from tasks.search import KnobSearch, config_key
from tasks.window import Window

MAX_TRIALS = 12  # a ceiling; the budget usually ends the search first


def _objectives(run: Run, window: Window, config: dict[str, Any]) -> dict[str, float]:
    return {**{k: v for k, v in window.stats["total"].items() if isinstance(v, int | float)},
            "usd_per_hour": usd_per_hour(run.spec, config)}


def _trial(run: Run, config: dict[str, Any], n: int) -> tuple[Window | None, list[str]]:
    """Apply one configuration, measure it (and its responses), put the kept configuration back."""
    candidate = Candidate(kind="set_config", params={"config": config}, description=f"search trial {n}: {config}",
                          risk="medium")
    try:
        change_id, undo = apply_change(run, candidate)
    except PerfagentsError:
        return None, []
    run.ledger.iterations += 1
    try:
        window = measure(run, f"search-{n}", change_id)
        wrong = run.responses.check(run.rt.handle.base_url) if run.responses is not None else []
        return window, [f"responses==baseline: {line}" for line in wrong]
    finally:
        revert_applied(run, change_id, candidate, undo, "search trial: measured, then back to the kept state")


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
    window_s = run.spec.load.duration_s + run.spec.load.warmup_s
    exhausted = None
    for n in range(1, max_trials + 1):
        if (exhausted := run.ledger.exhausted_by(next_load_s=window_s)) is not None:
            break
        config = search.suggest()
        if config is None:
            break
        window, wrong = _trial(run, config, n)
        if window is None or not (window.valid or window.errors_only):
            search.discard(config)
            continue
        broken = check_quality(run.request.quality, window.stats, run.baseline.stats) if window.valid else ["errors"]
        broken += wrong
        search.tell(config, _objectives(run, window, config), feasible=not broken, stats=window.stats)
        windows[config_key(search.normalize(config))] = window
    chosen = search.choose(run.request.goals, run.request.quality, run.baseline.stats, noise_rel=run.noise_rel)
    run.extra["pareto"] = search.pareto()
    if chosen is not None and config_key(chosen) != config_key(search.normalize(kept)):
        _adopt(run, chosen, windows[config_key(chosen)])
    return exhausted


def _adopt(run: Run, config: dict[str, Any], window: Window) -> None:
    """Apply the chosen point for good if its measured window beats the current one."""
    assert run.current is not None
    effect = compare_windows(run.current.samples, window.samples, endpoint=None, metric="p95_ms")
    keep, reason = decide(effect, run.noise_rel)
    if not keep:
        run.changes.append({"kind": "set_config", "params": {"config": config}, "status": "reverted",
                            "description": f"search choice {config}", "reason": f"not adopted: {reason}",
                            "effect": effect})
        return
    candidate = Candidate(kind="set_config", params={"config": config}, description=f"search choice {config}")
    change_id, _ = apply_change(run, candidate)
    mark_change(run.store, change_id, "kept", reason=f"chosen from the Pareto front; {reason}", effect=effect)
    run.changes.append({"kind": "set_config", "params": {"config": config}, "status": "kept",
                        "description": candidate.description, "reason": reason, "effect": effect})
    run.current = window
