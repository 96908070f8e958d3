"""Adaptive multi-objective search over a target's knobs (comprehensive scope).

Optuna's ask/tell drives it: ``suggest()`` asks for a configuration, the loop measures one
window with it, ``tell()`` records the window's objectives (by default p95 latency and the
compute cost from the spec's ``cost:`` prices) and whether the quality thresholds held
(Optuna constraints: an infeasible point steers the sampler away and is never chosen).

The search space is discrete, so that a grid over the same knobs is well defined and a
configuration is never measured twice (memoization): a knob keeps all its values when it
has at most MAX_INT_VALUES of them, a wider int range is cut into INT_LEVELS evenly spaced
levels (cache_ttl_s 0..120 -> 0, 60, 120), a float into FLOAT_LEVELS; ``levels=`` overrides.

Screening first (``screen_around``, tasks/screening.py): one knob moved at a time from the
kept configuration, then the moves that helped combined (or, when one knob helped, the other
moves made again from there); then the sampler (TPE by default) models from everything
measured.

The compromise rule of ``choose()`` (goals = performance goals, margins = quality
thresholds such as ``p99_ms<=1.1*baseline``):

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

import itertools
import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from tasks.analysis.compare import check_quality
from tasks.analysis.gate import ERROR_RULE
from tasks.errors import InputError
from tasks.expressions import OPERATORS, Expression
from tasks.screening import Screening
from tasks.spec import BoolKnob, ChoiceKnob, FloatKnob, IntKnob, TargetSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

DIRECTIONS: dict[str, Literal["minimize", "maximize"]] = {"p50_ms": "minimize", "p95_ms": "minimize", "p99_ms": "minimize", "mean_ms": "minimize",
              "error_rate": "minimize", "usd_per_hour": "minimize", "rps": "maximize"}
DEFAULT_OBJECTIVES = ("p95_ms", "usd_per_hour")
COST_OBJECTIVE = "usd_per_hour"
SAMPLERS = ("tpe", "nsga2", "random")
MAX_INT_VALUES = 8  # an int knob with more values than this is cut into INT_LEVELS levels
INT_LEVELS = 3
FLOAT_LEVELS = 5
# TPE's random start. Budgets here are a handful of windows, so TPE models from the baseline
# plus 2 random points on (Optuna's default of 10 would be random search for the whole run).
N_STARTUP_TRIALS = 2
NSGA2_POPULATION = 6
MAX_ASK_TRIES = 25  # asks that may return an already measured config before we pick one ourselves
MAX_ENUMERATED = 100_000  # larger spaces are never listed whole
MISSING_VIOLATION = 1.0  # constraint value of a threshold that could not be observed
SEARCH_LABEL_PREFIX = "search-"  # windows the search measured (history_rows reads only these)
RESPONSES_EXPECTATION = "responses==baseline"  # a validations row the search writes after the check
ERROR_EXPECTATION = ERROR_RULE  # the gate rule whose failure alone still measures a configuration


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


def _levels(low: float, high: float, n: int, integer: bool) -> list[Any]:
    values = np.linspace(low, high, n)
    out = [int(round(v)) for v in values] if integer else [float(v) for v in values]
    return sorted(set(out))


def _distribution(values: list[Any]) -> BaseDistribution:
    """Evenly spaced ints keep their order (IntDistribution with a step); anything else is categorical."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values) and len(values) > 1:
        steps = {b - a for a, b in itertools.pairwise(values)}
        if len(steps) == 1:
            return IntDistribution(values[0], values[-1], step=steps.pop())
    return CategoricalDistribution(values)


def search_space(spec: TargetSpec, levels: Mapping[str, list[Any]] | None = None) -> dict[str, BaseDistribution]:
    """Optuna distributions for the spec's knobs (see the module docstring for the levels)."""
    levels = dict(levels or {})
    unknown = sorted(set(levels) - set(spec.knobs))
    if unknown:
        raise InputError(f"search levels name unknown knob {unknown[0]!r}")
    space: dict[str, BaseDistribution] = {}
    for name, knob in spec.knobs.items():
        if name in levels:
            values = sorted(levels[name]) if not isinstance(knob, ChoiceKnob | BoolKnob) else list(levels[name])
        elif isinstance(knob, IntKnob):
            values = knob.values()
            if len(values) > MAX_INT_VALUES:
                values = _levels(knob.low, knob.high, INT_LEVELS, True)
        elif isinstance(knob, FloatKnob):
            values = _levels(knob.low, knob.high, FLOAT_LEVELS, False)
        else:
            values = knob.values()
        if not values:
            raise InputError(f"knob {name!r} has no values to search")
        space[name] = _distribution(values)
    return space


def distribution_values(dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    raise InputError(f"distribution {dist!r} is continuous and cannot be listed")


def space_size(space: Mapping[str, BaseDistribution]) -> int:
    return math.prod(len(distribution_values(d)) for d in space.values())


def grid_configs(space: Mapping[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Every configuration of a discrete space (the exhaustive grid), in a stable order."""
    names = list(space)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(distribution_values(space[n]) for n in names))]


def config_key(config: Mapping[str, Any]) -> str:
    return json.dumps(dict(config), sort_keys=True, default=str)


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


class KnobSearch:
    """Ask/tell search over a target's knobs with memoization, a Pareto front and a chosen point."""

    def __init__(
        self, spec: TargetSpec, *, objectives: Iterable[str] = DEFAULT_OBJECTIVES, sampler: str = "tpe",
        seed: int = 0, levels: Mapping[str, list[Any]] | None = None, n_startup_trials: int = N_STARTUP_TRIALS,
    ) -> None:
        self.spec = spec
        self.objectives = list(objectives)
        unknown = [o for o in self.objectives if o not in DIRECTIONS]
        if unknown or not self.objectives:
            raise InputError(f"unknown search objective {unknown[0] if unknown else None!r} (known: {', '.join(DIRECTIONS)})")
        if sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
        self.space = search_space(spec, levels)
        self.rng = np.random.default_rng(seed)
        self.study = optuna.create_study(directions=[DIRECTIONS[o] for o in self.objectives],
                                         sampler=_sampler(sampler, seed, n_startup_trials))
        self.points: dict[str, Point] = {}
        self.pending: dict[str, optuna.Trial] = {}
        self.chosen: dict[str, Any] | None = None
        self.screening: Screening | None = None  # set by screen_around()

    # -- memoization ------------------------------------------------------------------------
    def seen(self, config: Mapping[str, Any]) -> bool:
        """Whether this configuration was measured already (in this run or taken from history)."""
        return config_key(self.normalize(config)) in self.points

    def forget(self, config: Mapping[str, Any]) -> None:
        """Allow a configuration to be measured again (the user asked for it)."""
        self.points.pop(config_key(self.normalize(config)), None)

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config restricted to the searched knobs, values cast to the space's types."""
        out = {}
        for name, dist in self.space.items():
            if name not in config:
                raise InputError(f"configuration lacks knob {name!r}")
            value = config[name]
            if isinstance(dist, IntDistribution):
                value = int(value)
            elif isinstance(dist, CategoricalDistribution):
                same = [c for c in dist.choices if c == value]
                exact = [c for c in same if type(c) is type(value)]
                value = (exact or same or [value])[0]
            out[name] = value
        return out

    def in_space(self, config: Mapping[str, Any]) -> bool:
        try:
            values = self.normalize(config)
        except (InputError, TypeError, ValueError):
            return False
        return all(v in distribution_values(self.space[n]) for n, v in values.items())

    # -- screening ----------------------------------------------------------------------------
    def screen_around(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Suggest the one-knob moves from ``config`` first, then their follow-up (``follow_up``)."""
        self.screening = Screening({n: distribution_values(d) for n, d in self.space.items()}, self.normalize(config))
        return list(self.screening.planned)

    def combination(self) -> dict[str, Any] | None:
        """The screening origin with every measured move that helped (feasible, dominating the origin)."""
        if self.screening is None or (found := self._screened_moves()) is None:
            return None
        return self.screening.combination((p.config, self._vector(p)) for p in found[2])

    def follow_up(self) -> list[dict[str, Any]]:
        """What screening tries after its one-knob moves (tasks/screening.py): their combination
        when moves of two or more knobs helped; when one knob's did, the other feasible moves that
        cost no more, best first, made again from the best helpful point; else nothing (the
        sampler goes on)."""
        if self.screening is None or (found := self._screened_moves()) is None:
            return []
        origin, moves, helped = found
        if (combined := self.screening.combination((p.config, self._vector(p)) for p in helped)) is not None:
            return [combined]
        if not helped:
            return []
        better = min(helped, key=self._vector)
        others = sorted((p for p in moves if p is not better and not self._costlier(p, origin)), key=self._vector)
        return self.screening.recentred(better.config, [p.config for p in others])

    def _screened_moves(self) -> tuple[Point, list[Point], list[Point]] | None:
        """(origin, its measured feasible one-knob moves, the moves that dominate it); None
        before the screening's origin is measured."""
        assert self.screening is not None
        if (origin := self.points.get(config_key(self.screening.origin))) is None:
            return None
        start = self._vector(origin)
        moves = [p for p in self.points.values() if p.feasible and self.screening.moved_knob(p.config) is not None]
        return origin, moves, [p for p in moves if _dominates(self._vector(p), start)]

    def _costlier(self, point: Point, than: Point) -> bool:
        return COST_OBJECTIVE in self.objectives and point.objectives[COST_OBJECTIVE] > than.objectives[COST_OBJECTIVE]

    def _screened(self) -> dict[str, Any] | None:
        if self.screening is None:
            return None
        taken = set(self.points) | set(self.pending)
        return self.screening.next(lambda c: config_key(c) in taken, self.follow_up)

    def _enqueued(self, config: dict[str, Any]) -> dict[str, Any]:
        self.study.enqueue_trial(config)
        trial = self.study.ask(self.space)
        self.pending[config_key(config)] = trial
        return self.normalize(trial.params)

    # -- ask / tell ---------------------------------------------------------------------------
    def suggest(self) -> dict[str, Any] | None:
        """The next configuration to measure; never one already measured or pending.

        Screening configurations first (``screen_around``), then the sampler's. None when every
        configuration of the space has been measured.
        """
        if (screened := self._screened()) is not None:
            return self._enqueued(screened)
        for _ in range(MAX_ASK_TRIES):
            trial = self.study.ask(self.space)
            config = self.normalize(trial.params)
            key = config_key(config)
            if key not in self.points and key not in self.pending:
                self.pending[key] = trial
                return config
            self.study.tell(trial, state=TrialState.FAIL)  # a repeat: not measured, ignored by the sampler
        unseen = self._unseen_config()
        return None if unseen is None else self._enqueued(unseen)

    def tell(
        self, config: Mapping[str, Any], objectives: Mapping[str, float],
        feasible: bool | Mapping[str, float] = True, *, stats: Mapping[str, Any] | None = None,
        source: str = "measured",
    ) -> Point:
        """Record one measured configuration (suggested or not, e.g. the baseline)."""
        values = self.normalize(config)
        key = config_key(values)
        missing = [o for o in self.objectives if objectives.get(o) is None]
        if missing:
            raise InputError(f"the measurement of {key} lacks objective {missing[0]!r}")
        constraints = _constraints(feasible)
        point = Point(values, {k: float(v) for k, v in objectives.items() if v is not None}, constraints,
                      dict(stats) if stats is not None else None, source)
        ordered = [point.objectives[o] for o in self.objectives]
        trial = self.pending.pop(key, None)
        if trial is not None:
            for name, value in constraints.items():
                trial.set_constraint(name, value)
            self.study.tell(trial, ordered)
        elif self.in_space(values) and key not in self.points:
            self.study.add_trial(create_trial(values=ordered, params=values, distributions=self.space,
                                              constraints=constraints))
        self.points[key] = point
        return point

    def discard(self, config: Mapping[str, Any]) -> None:
        """A suggested configuration that could not be measured (invalid window): it may come again."""
        trial = self.pending.pop(config_key(self.normalize(config)), None)
        if trial is not None:
            self.study.tell(trial, state=TrialState.FAIL)

    def from_history(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Seed the study with earlier measurements of the same target and code version.

        Each row: ``{"config", "objectives", "feasible" | "constraints", "stats"?}``. Rows whose
        config lies outside the space, or lacks an objective, are skipped; returns how many were used.
        """
        used = 0
        for row in rows:
            config, objectives = row.get("config") or {}, row.get("objectives") or {}
            if not self.in_space(config) or any(objectives.get(o) is None for o in self.objectives):
                continue
            if self.seen(config):
                continue
            feasible = row.get("constraints", row.get("feasible", True))
            self.tell(config, objectives, feasible, stats=row.get("stats"), source="history")
            used += 1
        return used

    def _unseen_config(self) -> dict[str, Any] | None:
        taken = set(self.points) | set(self.pending)
        if space_size(self.space) <= MAX_ENUMERATED:
            unseen = [c for c in grid_configs(self.space) if config_key(c) not in taken]
            return unseen[int(self.rng.integers(len(unseen)))] if unseen else None
        for _ in range(MAX_ASK_TRIES * 4):
            config = {n: _draw(d, self.rng) for n, d in self.space.items()}
            if config_key(config) not in taken:
                return config
        return None

    # -- results ------------------------------------------------------------------------------
    def measured(self) -> list[Point]:
        return list(self.points.values())

    def front(self, points: Iterable[Point] | None = None) -> list[Point]:
        """The feasible non-dominated points (every objective oriented by its direction)."""
        pool = [p for p in (self.measured() if points is None else points) if p.feasible]
        return [p for p in pool if not any(_dominates(self._vector(q), self._vector(p)) for q in pool if q is not p)]

    def pareto(self) -> list[dict[str, Any]]:
        """``[{"config", "objectives", "chosen"}]`` (the DESIGN ``--json`` contract), by cost then p95.

        The chosen point is listed even when it is off the front (a goal on an endpoint can
        make a dominated point the only one that meets the goals).
        """
        front = self.front()
        chosen_key = config_key(self.chosen) if self.chosen is not None else None
        if chosen_key is not None and all(config_key(p.config) != chosen_key for p in front):
            front.append(self.points[chosen_key])
        front.sort(key=self._vector)
        return [{"config": dict(p.config), "objectives": {o: p.objectives[o] for o in self.objectives},
                 "chosen": config_key(p.config) == chosen_key} for p in front]

    def choose(
        self, goals: Iterable[Expression] = (), margins: Iterable[Expression] = (),
        baseline: Mapping[str, Any] | None = None, *, noise_rel: float = 0.0,
    ) -> dict[str, Any] | None:
        """The compromise configuration (the rule is in the module docstring); None if nothing is feasible."""
        point = choose_point(self.measured(), list(goals), list(margins), baseline, self.objectives,
                             noise_rel=noise_rel)
        self.chosen = dict(point.config) if point is not None else None
        return self.chosen

    def _vector(self, point: Point) -> tuple[float, ...]:
        return oriented(point, self.objectives)


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
    front = [p for p in pool if not any(_dominates(rank(q), rank(p)) for q in pool if q is not p)]
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


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def _constraints(feasible: bool | Mapping[str, float]) -> dict[str, float]:
    if isinstance(feasible, bool):
        return {"quality": 0.0 if feasible else MISSING_VIOLATION}
    return {str(k): float(v) for k, v in feasible.items()} or {"quality": 0.0}


def _draw(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    values = distribution_values(dist)
    return values[int(rng.integers(len(values)))]


def _sampler(name: str, seed: int, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate TPE is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)
        return optuna.samplers.RandomSampler(seed=seed)
