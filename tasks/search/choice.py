"""Measured points of a knob search, their quality constraints, and which one to choose.

The compromise rule of ``choose_point`` (``KnobSearch.choose()``; goals = performance goals,
margins = quality thresholds such as ``p99_ms<=1.1*baseline``):

1. candidates: measured points whose constraints held and that keep every margin;
2. if some meet every goal: the cheapest of them (lowest ``usd_per_hour``), ties broken by
   the other objectives in their order (p95 first): meet the goals at the least cost;
3. if none meets every goal: the smallest normalized shortfall (sum over the goals of how
   far, relative to the threshold, the value is on the wrong side); shortfalls within
   ``noise_rel`` of the smallest count as equal (noise cannot tell them apart), and of those
   the cheapest wins, then the other objectives;
4. without goals: the Pareto point nearest the ideal point, each objective scaled to [0, 1]
   over the front (the "knee").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tasks.analysis.compare import check_quality
from tasks.errors import InputError
from tasks.expressions import OPERATORS, Expression

DIRECTIONS: dict[str, Literal["minimize", "maximize"]] = {"p50_ms": "minimize", "p95_ms": "minimize", "p99_ms": "minimize", "mean_ms": "minimize",
              "error_rate": "minimize", "usd_per_hour": "minimize", "rps": "maximize"}
COST_OBJECTIVE = "usd_per_hour"
MISSING_VIOLATION = 1.0  # constraint value of a threshold that could not be observed


@dataclass
class Point:
    """One measured configuration."""

    config: dict[str, Any]
    objectives: dict[str, float]
    constraints: dict[str, float]
    stats: dict[str, Any] | None = None
    source: str = "measured"  # measured | history

    @property
    def feasible(self) -> bool:
        return all(v <= 0.0 for v in self.constraints.values())

    def view(self) -> dict[str, Any]:
        """Window stats with the objectives merged into ``total`` (for goal checks)."""
        stats = self.stats or {}
        return {"endpoints": stats.get("endpoints", {}), "total": {**stats.get("total", {}), **self.objectives}}


def quality_constraints(
    quality: Iterable[Expression], stats: Mapping[str, Any], baseline: Mapping[str, Any] | None,
    *, responses_ok: bool | None = None,
) -> dict[str, float]:
    """Optuna constraint values per quality threshold: <= 0 holds, > 0 is the relative violation.

    ``responses==baseline`` uses ``responses_ok`` (tasks/correctness.py); an unobserved
    metric counts as violated (MISSING_VIOLATION).
    """
    out: dict[str, float] = {}
    for expr in quality:
        if expr.metric == "responses":
            if responses_ok is not None:
                out[expr.text] = 0.0 if responses_ok else MISSING_VIOLATION
            continue
        value, threshold = _observed(expr, stats, baseline)
        if value is None or threshold is None:
            out[expr.text] = MISSING_VIOLATION
        elif OPERATORS[expr.op](value, threshold):
            out[expr.text] = 0.0
        else:
            out[expr.text] = max(_gap(expr.op, value, threshold), 1e-9)
    return out


def _section(stats: Mapping[str, Any] | None, endpoint: str | None) -> Mapping[str, Any] | None:
    if stats is None:
        return None
    return stats.get("total") if endpoint is None else stats.get("endpoints", {}).get(endpoint)


def _observed(expr: Expression, stats: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    section = _section(stats, expr.endpoint) or {}
    value = section.get(expr.metric)
    try:
        threshold = expr.threshold(_section(baseline, expr.endpoint) if expr.relative else None)
    except InputError:
        return value, None
    return (None if value is None else float(value)), threshold


def _gap(op: str, value: float, threshold: float) -> float:
    """How far ``value`` is on the wrong side of ``threshold``, relative to it (0 when it holds)."""
    scale = max(abs(threshold), 1e-9)
    if op in ("<=", "<"):
        return max(0.0, (value - threshold) / scale)
    if op in (">=", ">"):
        return max(0.0, (threshold - value) / scale)
    return abs(value - threshold) / scale


def oriented(point: Point, objectives: list[str]) -> tuple[float, ...]:
    """Objective values, every one to minimize (maximized ones negated), cost first."""
    order = sorted(objectives, key=lambda o: o != COST_OBJECTIVE)
    return tuple(point.objectives[o] if DIRECTIONS[o] == "minimize" else -point.objectives[o] for o in order)


def choose_point(
    points: list[Point], goals: list[Expression], margins: list[Expression],
    baseline: Mapping[str, Any] | None, objectives: list[str], *, noise_rel: float = 0.0,
) -> Point | None:
    """The module docstring's rule over ``points`` (shared with the benchmark and the grid)."""
    pool = [p for p in points if p.feasible and not check_quality(margins, p.view(), baseline)]
    if not pool:
        return None
    rank: Callable[[Point], tuple[float, ...]] = lambda p: oriented(p, objectives)  # noqa: E731
    if goals:
        shortfall = {id(p): _shortfall(goals, p.view(), baseline) for p in pool}
        meeting = [p for p in pool if all(_met(g, p.view(), baseline) for g in goals)]
        if meeting:
            return min(meeting, key=rank)
        least = min(shortfall.values())
        near = [p for p in pool if shortfall[id(p)] <= least + noise_rel]
        return min(near, key=lambda p: (*rank(p)[:1], shortfall[id(p)], *rank(p)[1:]))
    front = [p for p in pool if not any(dominates(rank(q), rank(p)) for q in pool if q is not p)]
    matrix = np.array([rank(p) for p in front], dtype=float)
    span = matrix.max(axis=0) - matrix.min(axis=0)
    scaled = (matrix - matrix.min(axis=0)) / np.where(span > 0, span, 1.0)
    distance = np.sqrt((scaled**2).sum(axis=1))
    return min(zip(distance, front, strict=True), key=lambda d: (d[0], *rank(d[1])))[1]


def _met(goal: Expression, stats: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> bool:
    value, threshold = _observed(goal, stats, baseline)
    return value is not None and threshold is not None and OPERATORS[goal.op](value, threshold)


def _shortfall(goals: list[Expression], stats: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> float:
    total = 0.0
    for goal in goals:
        value, threshold = _observed(goal, stats, baseline)
        total += math.inf if value is None or threshold is None else _gap(goal.op, value, threshold)
    return total


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))
