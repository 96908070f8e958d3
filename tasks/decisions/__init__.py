"""Is this change really faster? The statistics every keep / revert decision rests on.

    effect.py    windows' log statistics and the hierarchical bootstrap of an arm ratio
    rule.py      the sequential keep / revert rule (one look per new window), endpoints
    regime.py    saturated (judge throughput) or not (judge latency), by Little's law
    quality.py   quality thresholds judged with the same bounds

Nothing here knows of Locust, targets or the store: plain functions over samples frames.
"""

from __future__ import annotations

from tasks.decisions.effect import (
    ArmEffect,
    WindowStat,
    arm_effect,
    arm_level,
    between_tau,
    window_stats,
)
from tasks.decisions.quality import broken_quality
from tasks.decisions.regime import busy_share, regime
from tasks.decisions.rule import LOOK_ALPHA, MAX_LOOKS, MIN_GAIN, Verdict, judge, judge_endpoints

__all__ = [
    "LOOK_ALPHA", "MAX_LOOKS", "MIN_GAIN", "ArmEffect", "Verdict", "WindowStat", "arm_effect", "arm_level",
    "between_tau", "broken_quality", "busy_share", "judge", "judge_endpoints", "regime", "window_stats",
]
