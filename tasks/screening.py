"""Screening: the first trials of a knob search, run the way a performance engineer runs them.

With a handful of windows, a model-based sampler is little better than chance, so the search
starts from the kept configuration: one knob moved at a time to its farthest value (each
other choice of a choice knob), then every move that helped combined in one configuration.
A move helped when its point is feasible and dominates the kept one (no objective worse, one
better: a faster configuration that costs more is left to the sampler). ``KnobSearch``
(tasks/search.py) owns the measurements and decides which moves helped; this module only
plans the trials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Config = dict[str, Any]


def moves(values: list[Any], current: Any) -> list[Any]:
    """A knob's screening values from ``current``: the farthest level of an ordered knob (int,
    float, bool: the other one), every other choice of a choice knob."""
    others = [v for v in values if v != current]
    if not others or current not in values:
        return others[:1]
    if all(isinstance(v, int | float) for v in values):  # bools are ints: the other value
        at = values.index(current)
        return [max(others, key=lambda v: abs(values.index(v) - at))]
    return others


class Screening:
    """The one-knob moves from ``origin`` still to suggest, then their combination (once)."""

    def __init__(self, values: Mapping[str, list[Any]], origin: Mapping[str, Any]) -> None:
        self.origin: Config = dict(origin)
        self.planned: list[Config] = [{**self.origin, name: value} for name, knob_values in values.items()
                                      for value in moves(knob_values, self.origin[name])]
        self.queue = list(self.planned)
        self.combined = False

    def combination(self, helped: Iterable[tuple[Mapping[str, Any], tuple[float, ...]]]) -> Config | None:
        """The origin with the best helpful move of each knob; None unless two or more knobs helped.

        ``helped``: (config, objective vector to minimize) of the measured points that helped;
        points that moved more than one knob are ignored.
        """
        best: dict[str, tuple[tuple[float, ...], Any]] = {}
        for config, vector in helped:
            moved = [n for n in self.origin if config[n] != self.origin[n]]
            if len(moved) != 1:
                continue
            name = moved[0]
            if name not in best or vector < best[name][0]:
                best[name] = (vector, config[name])
        if len(best) < 2:
            return None
        return {**self.origin, **{name: value for name, (_, value) in best.items()}}

    def next(self, taken: Callable[[Config], bool], combine: Callable[[], Config | None]) -> Config | None:
        """The next planned configuration not ``taken`` (measured or pending); then, once, ``combine()``."""
        while self.queue:
            config = self.queue.pop(0)
            if not taken(config):
                return config
        if not self.combined:
            self.combined = True
            combined = combine()
            if combined is not None and not taken(combined):
                return combined
        return None
