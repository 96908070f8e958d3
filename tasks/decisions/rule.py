"""The keep / revert rule, applied after every new window of a change (sequential testing).

After each look the change is

- ``better``: the one-sided (1 - LOOK_ALPHA) bound of the ratio lies beyond 1 by at least
  MIN_GAIN in the good direction (lower p95, or higher throughput for a saturated target);
- ``worse``: the one-sided (1 - LOOK_ALPHA) bound lies beyond 1 in the bad direction;
- ``no_gain``: the bound on the good side no longer reaches MIN_GAIN (a gain worth keeping
  is ruled out);
- ``undecided``: otherwise; another pair of windows is measured while looks and budget last.

The first look compares one window of the change with the kept state's earlier windows, and
the between-window spread it relies on comes from two or three windows: a single lucky or
unlucky window must not settle a trial on that. So before MIN_LOOKS looks only a decisive
effect (bound beyond DECISIVE, either way) settles it.

From the MIN_LOOKS-th look on, a trial whose estimate shows no gain at all (ratio at or beyond 1
in the bad direction) stops there as ``no_gain`` (``futile``): a non-binding futility bound.
It can only end trials without keeping them, so it cannot raise the false-keep rate; it costs
power only for gains so small that their estimate still lands on the wrong side of 1 after
three windows. Null changes otherwise ran all four looks (17 of 20 in benchmarks/decisions.py).

Looking up to MAX_LOOKS times at one-sided LOOK_ALPHA = 0.02 each keeps the chance of
keeping a change that does nothing at or below 5 % (Pocock's constant boundary for four looks
at an overall one-sided 5 % is about 2.06 sd, i.e. 0.02 per look); benchmarks/decisions.py
measures the rate on null changes instead of trusting the arithmetic. The ratio's interval
comes from the hierarchical bootstrap (tasks/decisions/effect.py): both the between-window and
the within-window variance are in it, so no separate noise floor is added on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from tasks.decisions.effect import ArmEffect, arm_effect, comparison_mix, window_stats

LOOK_ALPHA = 0.02
MIN_GAIN = 0.02  # a change must be at least 2 % better to be worth keeping
# In the latency regime a change is judged on the median latency of what it aims at, and kept
# only if its p95 is not shown slower. The median carries the work a change saves per request;
# the p95 of one endpoint is mostly queueing behind other requests. Measured on the reference
# shop: the products(category_id) index cut the catalog's median in every window (15.2, 8.8,
# 7.2 ms without it; 2.8, 5.2, 2.9, 2.1 with it) while its p95 (53.9, 34.0, 20.5 against 25.2,
# 34.5, 21.7, 14.7) left the trial undecided after 7 windows.
PRIMARY = "p50_ms"
TAIL_GUARD = "p95_ms"
MAX_LOOKS = 4
MIN_LOOKS = 2  # before this many looks only a decisive effect settles the trial
DECISIVE = 2.0  # ... one whose bound is beyond 2x (an index that turns a scan into a lookup)


@dataclass
class Verdict:
    outcome: str  # better | worse | no_gain | undecided
    reason: str
    effect: dict[str, Any] | None

    @property
    def settled(self) -> bool:
        return self.outcome != "undecided"


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def effect_dict(effect: ArmEffect, metric: str, endpoint: str | None, regime: str) -> dict[str, Any]:
    """The ``--json`` effect: DESIGN's keys, plus the windows, the regime and tau."""
    good_low = metric != "rps"
    p = effect.p_below(1.0) if good_low else effect.p_above(1.0)
    return {"endpoint": endpoint or "total", "metric": metric,
            "before": round(effect.before, 3), "after": round(effect.after, 3),
            "ratio": _sig(effect.ratio), "ci95": [_sig(effect.ci95[0]), _sig(effect.ci95[1])],
            "p_value": _sig(max(p, 1.0 / effect.draws.size), 3),
            "windows": {"before": effect.windows_before, "after": effect.windows_after},
            "tau": round(effect.tau, 4), "regime": regime}


def judge(before: Sequence[pl.DataFrame], after: Sequence[pl.DataFrame], *, metric: str = "p95_ms",
          endpoint: str | None = None, prior_tau: float = 0.0, prior_df: int = 1, regime: str = "latency",
          alpha: float = LOOK_ALPHA, min_gain: float = MIN_GAIN, look: int = MIN_LOOKS) -> Verdict:
    """Look number ``look`` at a change: ``before`` windows of the kept state, ``after`` windows with it."""
    verdict = _judge(before, after, metric=metric, endpoint=endpoint, prior_tau=prior_tau, prior_df=prior_df, regime=regime,
                     alpha=alpha, min_gain=min_gain)
    if look >= MIN_LOOKS or verdict.effect is None or not verdict.settled:
        return verdict
    lo, hi = verdict.effect["ci95"]
    if hi < 1.0 / DECISIVE or lo > DECISIVE:
        return verdict
    return Verdict("undecided", f"{verdict.reason}; not decisive after {look} look(s)", verdict.effect)


def _judge(before: Sequence[pl.DataFrame], after: Sequence[pl.DataFrame], *, metric: str,
           endpoint: str | None, prior_tau: float, prior_df: int, regime: str, alpha: float,
           min_gain: float) -> Verdict:
    mix = comparison_mix([*before, *after], metric, endpoint)  # both arms at one request mix
    b = window_stats(before, metric, endpoint=endpoint, seed=1, mix=mix)
    a = window_stats(after, metric, endpoint=endpoint, seed=2, mix=mix)
    if not b or not a:
        return Verdict("no_gain", f"too few {endpoint or 'total'} requests to judge {metric}", None)
    effect = arm_effect(b, a, prior_tau=prior_tau, prior_df=prior_df)
    out = effect_dict(effect, metric, endpoint, regime)
    name = metric.removesuffix("_ms")
    head = (f"{name} x{effect.ratio:.3g} [{effect.ci95[0]:.3g}, {effect.ci95[1]:.3g}] on {endpoint or 'total'}"
            f" ({len(b)} vs {len(a)} windows, {regime})")
    if metric == "rps":  # higher is better
        good, bad, limit = effect.lower(1 - alpha), effect.upper(1 - alpha), 1.0 + min_gain
        if good > limit:
            return Verdict("better", f"{head}: faster, bound {good:.3g} > {limit:.3g}", out)
        if bad < 1.0:
            return Verdict("worse", f"{head}: slower, bound {bad:.3g} < 1", out)
        if bad < limit:
            return Verdict("no_gain", f"{head}: no gain of {min_gain:.0%} possible (bound {bad:.3g})", out)
        return Verdict("undecided", f"{head}: undecided", out)
    good, bad, limit = effect.upper(1 - alpha), effect.lower(1 - alpha), 1.0 / (1.0 + min_gain)
    if good < limit:
        return Verdict("better", f"{head}: faster, bound {good:.3g} < {limit:.3g}", out)
    if bad > 1.0:
        return Verdict("worse", f"{head}: slower, bound {bad:.3g} > 1", out)
    if bad > limit:
        return Verdict("no_gain", f"{head}: no gain of {min_gain:.0%} possible (bound {bad:.3g})", out)
    return Verdict("undecided", f"{head}: undecided", out)


def futile(verdict: Verdict, look: int) -> Verdict:
    """An undecided verdict from the MIN_LOOKS-th look on whose estimate shows no gain at all ends
    as ``no_gain`` (the module docstring); any other verdict is returned as it is."""
    if verdict.outcome != "undecided" or look < MIN_LOOKS or verdict.effect is None:
        return verdict
    ratio = verdict.effect["ratio"]
    if (ratio <= 1.0) if verdict.effect["metric"] == "rps" else (ratio >= 1.0):
        return Verdict("no_gain", f"{verdict.reason}; futile: the estimate shows no gain after {look} looks",
                       verdict.effect)
    return verdict


def judge_endpoints(before: Sequence[pl.DataFrame], after: Sequence[pl.DataFrame], *, total: Verdict,
                    metric: str = "p95_ms", prior_tau: float = 0.0, prior_df: int = 1, look: int = MIN_LOOKS,
                    min_samples: int = 50) -> Verdict:
    """For a change aimed at no endpoint whose total cannot tell: some endpoints faster and none
    slower, each judged at LOOK_ALPHA / endpoints (Bonferroni). A response cache can cut the
    catalog's p95 several-fold while the total's p95, set by other endpoints, barely moves."""
    frames = [*before, *after]
    names = sorted(set.intersection(*(set(f.get_column("endpoint").drop_nulls()) for f in frames)))
    names = [n for n in names if min(f.filter(pl.col("endpoint") == n).height for f in frames) >= min_samples]
    if not names:
        return total
    verdicts = [judge(before, after, metric=metric, endpoint=n, prior_tau=prior_tau, prior_df=prior_df, look=look,
                      alpha=LOOK_ALPHA / len(names)) for n in names]
    worse = [v for v in verdicts if v.outcome == "worse"]
    better = [v for v in verdicts if v.outcome == "better"]
    if worse:
        return Verdict("worse", f"{total.reason}; {worse[0].reason}", worse[0].effect)
    if better:
        best = max(better, key=lambda v: v.effect["before"] if v.effect else 0.0)
        return Verdict("better", f"total {total.reason}; {best.reason} (worse on none of {len(names)} endpoints)",
                       best.effect)
    return total
