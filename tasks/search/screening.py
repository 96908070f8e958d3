"""Screening: the first trials of a knob search, run the way a performance engineer runs them.

With a handful of windows, a model-based sampler is little better than chance, so the search
starts from the kept configuration: one knob moved at a time to its farthest value (each
other choice of a choice knob). Then the follow-up: when moves of two or more knobs helped,
their combination in one configuration; when one knob's did, the other moves made again from
that better point, because a knob can matter only once another has moved (tuned SQLite
speeds up the writes that are the tail once the reads are cached). A move helped when its
point is feasible and dominates the kept one (no objective worse, one better: a faster
configuration that costs more is left to the sampler). ``KnobSearch`` (tasks/search/knob_search.py) owns
the measurements and decides which moves helped; this module only plans the trials.
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
    """The one-knob moves from ``origin`` still to suggest, then (once) their follow-up."""

    def __init__(self, values: Mapping[str, list[Any]], origin: Mapping[str, Any]) -> None:
        self.origin: Config = dict(origin)
        self.planned: list[Config] = [{**self.origin, name: value} for name, knob_values in values.items()
                                      for value in moves(knob_values, self.origin[name])]
        self.queue = list(self.planned)
        self.followed = False

    def moved_knob(self, config: Mapping[str, Any]) -> str | None:
        """The one knob ``config`` moved from the origin; None for the origin or several knobs moved."""
        moved = [n for n in self.origin if config[n] != self.origin[n]]
        return moved[0] if len(moved) == 1 else None

    def combination(self, helped: Iterable[tuple[Mapping[str, Any], tuple[float, ...]]]) -> Config | None:
        """The origin with the best helpful move of each knob; None unless two or more knobs helped.

        ``helped``: (config, objective vector to minimize) of the measured points that helped;
        points that moved more than one knob are ignored.
        """
        best: dict[str, tuple[tuple[float, ...], Any]] = {}
        for config, vector in helped:
            name = self.moved_knob(config)
            if name is None:
                continue
            if name not in best or vector < best[name][0]:
                best[name] = (vector, config[name])
        if len(best) < 2:
            return None
        return {**self.origin, **{name: value for name, (_, value) in best.items()}}

    def recentred(self, better: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> list[Config]:
        """Each of ``others`` (one-knob moves from the origin, in order) made again from ``better``
        (the one move that helped); moves of ``better``'s own knob are left out."""
        own = self.moved_knob(better)
        plans: list[Config] = []
        for other in others:
            name = self.moved_knob(other)
            if name is not None and name != own:
                plans.append({**better, name: other[name]})
        return plans

    def next(self, taken: Callable[[Config], bool], follow_up: Callable[[], list[Config]]) -> Config | None:
        """The next planned configuration not ``taken`` (measured or pending); when the planned
        ones are used up, once, those ``follow_up()`` returns, in order."""
        while True:
            while self.queue:
                config = self.queue.pop(0)
                if not taken(config):
                    return config
            if self.followed:
                return None
            self.followed = True
            self.queue = list(follow_up())
