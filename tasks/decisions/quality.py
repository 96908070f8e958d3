"""Quality thresholds judged with the same statistics as the effects.

A threshold breaks only when the evidence says it broke, not when one window's point estimate
is over it: ``p99_ms<=1.1*baseline`` breaks when the one-sided (1 - QUALITY_ALPHA) lower bound
of the p99 ratio (the change's windows against the baseline's A/A windows, hierarchical
bootstrap) lies above 1.1; ``p95_ms<=200`` when the lower bound of the windows' p95 lies above
200 ms; ``error_rate<=0.01`` when the lower end of the Wilson interval of the pooled error
rate lies above 0.01; ``rps>=0.9*baseline`` when the upper bound of the rps ratio lies below
0.9. Other metrics (``mean_ms``, frontend and cost metrics) fall back to the pooled point
value (tasks/analysis/compare.py ``check_quality``); ``responses==baseline`` is checked by its owner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from tasks.analysis.compare import SKIPPED_METRICS, check_quality
from tasks.analysis.stats import PERCENTILES
from tasks.analysis.stats import window_stats as pooled_stats
from tasks.decisions.effect import arm_effect, arm_level, comparison_mix, window_stats
from tasks.expressions import OPERATORS, Expression

QUALITY_ALPHA = 0.05
Z_ONE_SIDED = 1.6449  # QUALITY_ALPHA one-sided


def wilson_bounds(errors: int, n: int, z: float = Z_ONE_SIDED) -> tuple[float, float]:
    """The Wilson score interval of a proportion (one-sided bounds at ``z``)."""
    if n == 0:
        return 0.0, 1.0
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _errors(frames: Sequence[pl.DataFrame], endpoint: str | None) -> tuple[int, int]:
    errors = n = 0
    for f in frames:
        part = f if endpoint is None else f.filter(pl.col("endpoint") == endpoint)
        n += part.height
        errors += part.filter(pl.col("error").is_not_null()).height if "error" in part.columns else 0
    return errors, n


def _bounds(expr: Expression, after: Sequence[pl.DataFrame], baseline: Sequence[pl.DataFrame],
            prior_tau: float) -> tuple[float, float, float] | None:
    """(point, lower, upper) of the metric (or of its ratio to the baseline when relative)."""
    conf = 1.0 - QUALITY_ALPHA
    if expr.metric == "error_rate":
        errors, n = _errors(after, expr.endpoint)
        if n == 0:
            return None
        lo, hi = wilson_bounds(errors, n)
        point = errors / n
        if expr.relative:
            base_errors, base_n = _errors(baseline, expr.endpoint)
            base = base_errors / base_n if base_n else 0.0
            if base == 0:
                return None  # k * 0: judged on the pooled point value
            return point / base, lo / base, hi / base
        return point, lo, hi
    if expr.metric not in (*PERCENTILES, "rps"):
        return None
    mix = comparison_mix([*after, *baseline], expr.metric, expr.endpoint) if expr.relative else None  # one for both
    a = window_stats(after, expr.metric, endpoint=expr.endpoint, seed=3, mix=mix)
    if not a:
        return None
    if expr.relative:
        b = window_stats(baseline, expr.metric, endpoint=expr.endpoint, seed=4, mix=mix)
        if not b:
            return None
        effect = arm_effect(b, a, prior_tau=prior_tau)
        return effect.ratio, effect.lower(conf), effect.upper(conf)
    level, draws = arm_level(a, prior_tau=prior_tau)
    return level, float(np.quantile(draws, 1 - conf)), float(np.quantile(draws, conf))


def broken_quality(expressions: Sequence[Expression], after: Sequence[pl.DataFrame],
                   baseline: Sequence[pl.DataFrame], baseline_stats: Mapping[str, Any] | None,
                   *, prior_tau: float = 0.0) -> list[str]:
    """One line per threshold the evidence says broke (empty when all hold)."""
    broken: list[str] = []
    fallback: list[Expression] = []
    for expr in expressions:
        if expr.metric in SKIPPED_METRICS:
            continue
        bounds = _bounds(expr, after, baseline, prior_tau)
        if bounds is None:
            fallback.append(expr)
            continue
        point, lo, hi = bounds
        limit = expr.value if expr.relative else expr.threshold(None)
        op = OPERATORS[expr.op]
        # broken beyond doubt: even the most favourable bound misses the threshold
        favourable = lo if expr.op in ("<=", "<") else hi
        if expr.op in ("<=", "<", ">=", ">") and not op(favourable, limit):
            what = "ratio to baseline" if expr.relative else "value"
            broken.append(f"{expr.text}: {what} {point:.4g}, {1 - QUALITY_ALPHA:.0%} bounds "
                          f"[{lo:.4g}, {hi:.4g}] beyond {limit:g}")
    if fallback:
        pooled = pooled_stats(pl.concat(list(after), how="vertical_relaxed"), _span(after))
        broken += check_quality(fallback, pooled, baseline_stats)
    return broken


def _span(frames: Sequence[pl.DataFrame]) -> float:
    total = 0.0
    for f in frames:
        ts = f.get_column("ts").drop_nulls().to_numpy()
        if ts.size > 1:
            total += float(ts.max() - ts.min())
    return max(total, 1e-9)
