"""Web Vitals goals and quality thresholds, judged from a state's page loads.

The frontend agent loads every ``frontend.pages`` URL ``frontend.loads`` times in a cold
Chromium context (tasks/agents/frontend/agent.py); each load gives ``lcp_ms``, ``fcp_ms``,
``cls``, ``tbt_ms`` and ``ttfb_ms``. A state's value of a vital is the mean over its loads
(all pages, or one page: ``lcp_ms[/products/1]<=2500`` names it like an endpoint), with a
percentile-bootstrap interval over the loads (``tasks.analysis.compare.bootstrap_means``, the
statistic the request metrics use for means). A relative threshold compares the ratio of the
two states' means, each side resampled independently.

- A goal (``lcp_ms<=2500``) is met when the point value holds; its row carries the interval
  and the number of loads, so "met" comes with its evidence.
- A quality threshold breaks only beyond doubt, like tasks/decisions/quality.py: when even the
  favourable one-sided (1 - QUALITY_ALPHA) bound misses it. Fewer than MIN_LOADS loads on a
  side judge nothing (a bootstrap of two values is no interval).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from tasks.analysis.compare import bootstrap_means
from tasks.expressions import OPERATORS, Expression

VITALS = ("lcp_ms", "fcp_ms", "cls", "tbt_ms", "ttfb_ms")
MIN_LOADS = 3  # per side, to judge a vital
N_BOOT = 2000
QUALITY_ALPHA = 0.05  # the one-sided level thresholds are judged at (as tasks/decisions/quality.py)
GOAL_CONF = 0.95  # the two-sided interval a goal row reports
SCHEMA = {"page": pl.Utf8, **{m: pl.Float64 for m in VITALS}}


def is_vital(expr: Expression) -> bool:
    return expr.metric in VITALS


def page_loads(observed: Mapping[str, Any] | None) -> pl.DataFrame:
    """One row per successful page load of a frontend agent's observation: page and the vitals."""
    rows = []
    for path, page in ((observed or {}).get("pages") or {}).items():
        for load in page.get("loads") or []:
            if "error" not in load:
                rows.append({"page": path, **{m: _num(load.get(m)) for m in VITALS}})
    return pl.DataFrame(rows, schema=SCHEMA)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _values(loads: pl.DataFrame | None, expr: Expression) -> np.ndarray:
    if loads is None or loads.height == 0:
        return np.zeros(0)
    part = loads if expr.endpoint is None else loads.filter(pl.col("page") == expr.endpoint)
    values = part.get_column(expr.metric).drop_nulls().to_numpy().astype(np.float64)
    return values[np.isfinite(values)]


def vital_draws(expr: Expression, loads: pl.DataFrame | None, baseline: pl.DataFrame | None = None,
                *, seed: int = 0) -> tuple[float, np.ndarray, int] | None:
    """(point, bootstrap draws, loads) of the mean vital, or of its ratio to the baseline's when
    the expression is relative; None when a side has fewer than MIN_LOADS loads or the baseline's
    mean is 0 (k * 0: judged on the absolute values instead, see ``_absolute``)."""
    a = _values(loads, expr)
    if a.size < MIN_LOADS:
        return None
    rng = np.random.default_rng(seed)
    draws = bootstrap_means(a, N_BOOT, rng)
    if not expr.relative:
        return float(a.mean()), draws, int(a.size)
    b = _values(baseline, expr)
    if b.size < MIN_LOADS or float(b.mean()) == 0.0:
        return None
    base = bootstrap_means(b, N_BOOT, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = draws / base
    return float(a.mean() / b.mean()), ratios[np.isfinite(ratios)], int(a.size)


def _limit(expr: Expression, baseline: pl.DataFrame | None) -> tuple[Expression, float] | None:
    """A relative expression whose baseline mean is 0 becomes the absolute ``metric op 0``."""
    if not expr.relative:
        return expr, expr.value
    b = _values(baseline, expr)
    if b.size >= MIN_LOADS and float(b.mean()) == 0.0:
        return Expression(expr.text, expr.metric, expr.op, 0.0, False, expr.endpoint), 0.0
    return (expr, expr.value) if b.size >= MIN_LOADS else None


def broken_vitals(expressions: Iterable[Expression], after: pl.DataFrame | None,
                  baseline: pl.DataFrame | None, *, seed: int = 0) -> list[str]:
    """One line per vital threshold the page loads say broke beyond doubt (empty when all hold
    or when there are too few loads to say)."""
    broken = []
    for expr in expressions:
        if not is_vital(expr) or expr.op == "==":
            continue
        resolved = _limit(expr, baseline)
        if resolved is None:
            continue
        judged, limit = resolved
        found = vital_draws(judged, after, baseline, seed=seed)
        if found is None:
            continue
        point, draws, n = found
        lo, hi = (float(v) for v in np.quantile(draws, [QUALITY_ALPHA, 1 - QUALITY_ALPHA]))
        favourable = lo if judged.op in ("<=", "<") else hi
        if not OPERATORS[judged.op](favourable, limit):
            what = "ratio to baseline" if judged.relative else "mean"
            broken.append(f"{expr.text}: {what} {point:.4g} over {n} page loads, {1 - QUALITY_ALPHA:.0%} "
                          f"bounds [{lo:.4g}, {hi:.4g}] beyond {limit:g}")
    return broken


def vital_goals(expressions: Sequence[Expression], loads: pl.DataFrame | None,
                baseline: pl.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Goal rows ``{"expr", "met", "value", "ci95", "loads"}`` of the vital expressions, by text.

    Without MIN_LOADS page loads a goal is not met, and its row says why."""
    rows: dict[str, dict[str, Any]] = {}
    for expr in expressions:
        if not is_vital(expr):
            continue
        resolved = _limit(expr, baseline)
        found = vital_draws(resolved[0], loads, baseline) if resolved else None
        if resolved is None or found is None:
            rows[expr.text] = {"expr": expr.text, "met": False, "value": None, "loads": int(_values(loads, expr).size),
                               "reason": f"fewer than {MIN_LOADS} page loads measured {expr.metric}"}
            continue
        judged, limit = resolved
        point, draws, n = found
        lo, hi = np.quantile(draws, [(1 - GOAL_CONF) / 2, (1 + GOAL_CONF) / 2])
        value = float(_values(loads, expr).mean())
        rows[expr.text] = {"expr": expr.text, "met": bool(OPERATORS[judged.op](point, limit)),
                           "value": round(value, 4), "ci95": [_sig(lo), _sig(hi)], "loads": n}
    return rows


def _sig(value: float) -> float:
    return float(f"{float(value):.4g}")
