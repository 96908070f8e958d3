"""Adaptive multi-objective search over a target's knobs (comprehensive scope).

Optuna's ask/tell drives it: ``suggest()`` asks for a configuration, the loop measures one
window with it, ``tell()`` records the window's objectives (by default p95 latency and the
compute cost from the spec's ``cost:`` prices) and whether the quality thresholds held
(Optuna constraints: an infeasible point steers the sampler away and is never chosen).

Screening first (``screen_around``, tasks/search/screening.py): one knob moved at a time from
the kept configuration, then the moves that helped combined (or, when one knob helped, the
other moves made again from there); then the sampler (TPE by default) models from everything
measured.

The space is tasks/search/space.py's (discrete: a configuration is never measured twice);
the measured points and the compromise rule of ``choose()`` are tasks/search/choice.py's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from tasks.errors import InputError
from tasks.expressions import Expression
from tasks.search.choice import (
    COST_OBJECTIVE,
    DIRECTIONS,
    MISSING_VIOLATION,
    Point,
    choose_point,
    dominates,
    oriented,
)
from tasks.search.screening import Screening
from tasks.search.space import (
    config_key,
    distribution_values,
    grid_configs,
    search_space,
    space_size,
)
from tasks.spec import TargetSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

DEFAULT_OBJECTIVES = ("p95_ms", "usd_per_hour")
SAMPLERS = ("tpe", "nsga2", "random")
# TPE's random start. Budgets here are a handful of windows, so TPE models from the baseline
# plus 2 random points on (Optuna's default of 10 would be random search for the whole run).
N_STARTUP_TRIALS = 2
NSGA2_POPULATION = 6
MAX_ASK_TRIES = 25  # asks that may return an already measured config before we pick one ourselves
MAX_ENUMERATED = 100_000  # larger spaces are never listed whole


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
        """What screening tries after its one-knob moves (tasks/search/screening.py): their combination
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
        return origin, moves, [p for p in moves if dominates(self._vector(p), start)]

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
        return [p for p in pool if not any(dominates(self._vector(q), self._vector(p)) for q in pool if q is not p)]

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
        """The compromise configuration (the rule: tasks/search/choice.py); None if nothing is feasible."""
        point = choose_point(self.measured(), list(goals), list(margins), baseline, self.objectives,
                             noise_rel=noise_rel)
        self.chosen = dict(point.config) if point is not None else None
        return self.chosen

    def _vector(self, point: Point) -> tuple[float, ...]:
        return oriented(point, self.objectives)


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
