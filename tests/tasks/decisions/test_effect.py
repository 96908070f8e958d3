"""The hierarchical bootstrap: intervals that carry both the between- and within-window spread."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.decisions.effect import arm_effect, arm_level, between_tau, window_stats
from tasks.errors import PerfagentsError


def test_same_distribution_interval_contains_one(make_arm) -> None:
    rng = np.random.default_rng(0)
    before, after = window_stats(make_arm(rng, 3), "p95_ms"), window_stats(make_arm(rng, 3), "p95_ms")
    effect = arm_effect(before, after)
    assert effect.ci95[0] < 1.0 < effect.ci95[1]
    assert 0.9 < effect.ratio < 1.1


def test_a_real_gain_is_inside_its_interval_and_one_is_not(make_arm) -> None:
    rng = np.random.default_rng(1)
    effect = arm_effect(window_stats(make_arm(rng, 3), "p95_ms"), window_stats(make_arm(rng, 3, scale=0.7), "p95_ms"))
    assert effect.ci95[0] < 0.7 < effect.ci95[1] < 1.0


def test_between_window_spread_widens_the_interval(make_arm) -> None:
    quiet_rng, loud_rng = np.random.default_rng(2), np.random.default_rng(2)
    quiet = arm_effect(window_stats(make_arm(quiet_rng, 4), "p95_ms"), window_stats(make_arm(quiet_rng, 4), "p95_ms"))
    loud = arm_effect(window_stats(make_arm(loud_rng, 4, tau=0.2), "p95_ms"),
                      window_stats(make_arm(loud_rng, 4, tau=0.2), "p95_ms"))
    width = lambda e: math.log(e.ci95[1] / e.ci95[0])  # noqa: E731
    assert width(loud) > 1.5 * width(quiet)
    assert loud.tau > quiet.tau


def test_tau_is_the_spread_beyond_sampling(make_arm) -> None:
    rng = np.random.default_rng(3)
    arms = [window_stats(make_arm(rng, 8, tau=0.15), "p95_ms") for _ in range(3)]
    tau, df = between_tau(arms)
    assert df == 21 and 0.08 < tau < 0.25
    flat = [window_stats(make_arm(rng, 8), "p95_ms") for _ in range(3)]
    assert between_tau(flat)[0] < 0.05  # sampling alone: no between-window part


def test_one_window_per_arm_uses_the_prior_spread(make_window) -> None:
    rng = np.random.default_rng(4)
    before, after = window_stats([make_window(rng)], "p95_ms"), window_stats([make_window(rng)], "p95_ms")
    narrow, wide = arm_effect(before, after), arm_effect(before, after, prior_tau=0.2)
    assert between_tau([before, after]) == (None, 0)
    assert wide.ci95[1] / wide.ci95[0] > narrow.ci95[1] / narrow.ci95[0]


def test_throughput_and_arm_level(make_arm) -> None:
    rng = np.random.default_rng(5)
    slow, fast = make_arm(rng, 3, rps=100.0), make_arm(rng, 3, rps=130.0)
    effect = arm_effect(window_stats(slow, "rps"), window_stats(fast, "rps"))
    assert effect.ci95[0] > 1.2 and effect.ratio == pytest.approx(1.3, rel=0.05)
    level, draws = arm_level(window_stats(slow, "p95_ms"))
    assert np.quantile(draws, 0.025) < level < np.quantile(draws, 0.975)


def test_refuses_an_empty_arm_or_an_unknown_metric(make_window) -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(PerfagentsError, match="both sides"):
        arm_effect([], window_stats([make_window(rng)], "p95_ms"))
    with pytest.raises(PerfagentsError, match="cannot judge"):
        window_stats([make_window(rng)], "lcp_ms")
