"""The discrete search space over a target's knobs (the search's, the grid's, the benchmarks').

The search space is discrete, so that a grid over the same knobs is well defined and a
configuration is never measured twice (memoization): a knob keeps all its values when it
has at most MAX_INT_VALUES of them, a wider int range is cut into INT_LEVELS evenly spaced
levels (cache_ttl_s 0..120 -> 0, 60, 120), a float into FLOAT_LEVELS; ``levels=`` overrides.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
)

from tasks.errors import InputError
from tasks.spec import BoolKnob, ChoiceKnob, FloatKnob, IntKnob, TargetSpec

MAX_INT_VALUES = 8  # an int knob with more values than this is cut into INT_LEVELS levels
INT_LEVELS = 3
FLOAT_LEVELS = 5


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
