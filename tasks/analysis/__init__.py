"""Arithmetic on measured windows: plain functions on frames and dicts, no target, no agents.

    stats.py      per-endpoint and total latency, throughput and error rate of a window
    gate.py       the expectations gate: is this window a valid measurement?
    compare.py    before/after comparisons with confidence intervals; goal and quality checks
    noise.py      the noise floor, measured adaptively from A/A windows
    capacity.py   the Universal Scalability Law fitted to a step load; fleet sizing
    cost.py       what a configuration costs to run, per hour and per request
"""

from __future__ import annotations

from tasks.analysis.capacity import fit_usl, recommend
from tasks.analysis.compare import bootstrap_ratio_ci, check_goals, check_quality, compare_windows
from tasks.analysis.cost import cost_tracking, usd_per_hour
from tasks.analysis.gate import ERROR_RULE, GateResult, validate_window
from tasks.analysis.noise import AdaptiveNoise, estimate_noise
from tasks.analysis.stats import PERCENTILES, window_stats

__all__ = [
    "ERROR_RULE",
    "PERCENTILES",
    "AdaptiveNoise",
    "GateResult",
    "bootstrap_ratio_ci",
    "check_goals",
    "check_quality",
    "compare_windows",
    "cost_tracking",
    "estimate_noise",
    "fit_usl",
    "recommend",
    "usd_per_hour",
    "validate_window",
    "window_stats",
]
