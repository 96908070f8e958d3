"""Which change to try next: candidates from findings, and the knob search of the comprehensive scope.

    optimizer.py     knob candidates and findings' candidates, ranked by expected gain, risk and cost
    calibration.py   per kind of estimate, how far estimates came true (shrinkage), the calibrated gain
    estimates.py     a tried change's estimate; the store's history of estimates against measurements
    space.py         the discrete space over a target's knobs (also the grid's)
    choice.py        measured points, quality constraints, the compromise rule (which point to keep)
    screening.py     the search's first trials: one knob moved at a time, then what helped combined
    knob_search.py   KnobSearch: Optuna's ask/tell with memoization, a Pareto front, a chosen point
    history.py       memoization across runs: earlier runs' search windows as rows for the search

Knows nothing of Locust or the agents: it works on findings, a spec and measured statistics.
"""

from __future__ import annotations

from tasks.search.choice import Point, choose_point, quality_constraints
from tasks.search.history import history_rows
from tasks.search.knob_search import KnobSearch
from tasks.search.optimizer import candidates_from_findings, knob_candidates, rank_candidates
from tasks.search.screening import Screening
from tasks.search.space import config_key, grid_configs, search_space

__all__ = [
    "KnobSearch",
    "Point",
    "Screening",
    "candidates_from_findings",
    "choose_point",
    "config_key",
    "grid_configs",
    "history_rows",
    "knob_candidates",
    "quality_constraints",
    "rank_candidates",
    "search_space",
]
