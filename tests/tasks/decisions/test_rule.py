"""The keep / revert rule at each look of a sequential trial."""

from __future__ import annotations

import numpy as np

from tasks.decisions.rule import judge


def test_a_clear_gain_is_better_after_two_looks(make_arm) -> None:
    rng = np.random.default_rng(0)
    verdict = judge(make_arm(rng, 3), make_arm(rng, 2, scale=0.75), look=2)
    assert verdict.outcome == "better" and verdict.effect["ratio"] < 0.8
    assert verdict.effect["windows"] == {"before": 3, "after": 2}


def test_a_modest_gain_is_not_settled_by_one_window(make_arm) -> None:
    rng = np.random.default_rng(1)
    verdict = judge(make_arm(rng, 3), make_arm(rng, 1, scale=0.75), look=1)
    assert verdict.outcome == "undecided" and "not decisive" in verdict.reason


def test_a_decisive_gain_settles_at_the_first_look(make_arm) -> None:
    rng = np.random.default_rng(2)
    assert judge(make_arm(rng, 2), make_arm(rng, 1, scale=0.05), look=1).outcome == "better"


def test_slower_is_worse_and_equal_is_no_gain(make_arm) -> None:
    rng = np.random.default_rng(3)
    assert judge(make_arm(rng, 3), make_arm(rng, 3, scale=1.4), look=3).outcome == "worse"
    same = judge(make_arm(rng, 4, n=20000), make_arm(rng, 4, n=20000), look=4)
    assert same.outcome == "no_gain", same.reason


def test_noisy_windows_leave_a_small_gain_undecided(make_window) -> None:
    rng = np.random.default_rng(4)
    before = [make_window(rng, s) for s in (1.3, 0.8)]  # windows 60 % apart: a noisy machine
    after = [make_window(rng, 0.9 * s) for s in (0.8, 1.3)]
    verdict = judge(before, after, look=2)
    assert verdict.outcome == "undecided", verdict.reason


def test_a_saturated_state_is_judged_on_throughput(make_arm) -> None:
    rng = np.random.default_rng(5)
    verdict = judge(make_arm(rng, 3, rps=100.0), make_arm(rng, 2, rps=140.0), metric="rps", regime="saturated", look=2)
    assert verdict.outcome == "better" and verdict.effect["metric"] == "rps" and verdict.effect["regime"] == "saturated"


def test_too_few_requests_of_the_endpoint_is_no_gain(make_arm) -> None:
    rng = np.random.default_rng(6)
    verdict = judge(make_arm(rng, 2), make_arm(rng, 2), endpoint="missing", look=2)
    assert verdict.outcome == "no_gain" and verdict.effect is None


def test_an_undecided_trial_whose_estimate_shows_no_gain_is_futile_from_the_second_look(make_window) -> None:
    from tasks.decisions.rule import Verdict, futile

    rng = np.random.default_rng(5)
    before = [make_window(rng, s) for s in (1.3, 0.8)]
    after = [make_window(rng, 1.05 * s) for s in (0.8, 1.3)]  # noisy, and if anything slower
    verdict = judge(before, after, look=2)
    assert verdict.outcome == "undecided" and verdict.effect["ratio"] >= 1.0, verdict.reason
    assert futile(verdict, 1).outcome == "undecided"  # the first look never stops a trial this way
    stopped = futile(verdict, 2)
    assert stopped.outcome == "no_gain" and "futile" in stopped.reason
    gaining = judge(before, [make_window(rng, 0.9 * s) for s in (0.8, 1.3)], look=2)
    assert gaining.outcome == "undecided" and futile(gaining, 2).outcome == "undecided"
    rps = Verdict("undecided", "rps", {"metric": "rps", "ratio": 0.97})
    assert futile(rps, 3).outcome == "no_gain"  # throughput: lower is no gain
    assert futile(Verdict("undecided", "rps", {"metric": "rps", "ratio": 1.03}), 3).outcome == "undecided"
