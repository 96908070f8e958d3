"""Change points in signature series, judged against nulls resampled from A/A windows."""

from __future__ import annotations

import math

import numpy as np

from tasks.analysis.changepoints import (
    FA_TARGET,
    aa_deviations,
    build_null,
    detect,
    null_max_gains,
    split_gains,
    t_test_detect,
)


def aa_windows(runs: int = 6, per_run: int = 3, sd: float = 0.03, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(100 * np.exp(rng.normal(0, sd, per_run))) for _ in range(runs)]


def history(n: int, step_at: int | None, step: float, sd: float = 0.03 / math.sqrt(3), seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    x = 100 * np.exp(rng.normal(0, sd, n))
    if step_at is not None:
        x[step_at:] *= 1 + step
    return list(x)


def test_split_gains_match_the_l2_cost_drop() -> None:
    x = np.array([1.0, 2.0, 0.0, 5.0, 6.0])
    gains = split_gains(x)
    for t in range(1, 5):
        drop = ((x - x.mean()) ** 2).sum() - ((x[:t] - x[:t].mean()) ** 2).sum() - ((x[t:] - x[t:].mean()) ** 2).sum()
        assert math.isclose(gains[t - 1], drop)


def test_deviations_are_within_run_and_rescaled() -> None:
    dev = aa_deviations([[100.0, 100.0], [200.0, 200.0], [90.0, 110.0], [5.0]])
    assert dev.size == 6 and abs(dev.mean()) < 1e-12  # the runs' levels are taken out; a lone window adds nothing
    assert math.isclose(float(np.abs(dev).max()), abs(math.log(90) - (math.log(90) + math.log(110)) / 2) * math.sqrt(2))


def test_a_20pct_step_is_found_where_it_is_confirmed_and_rare_under_the_null() -> None:
    values = history(12, 6, 0.20)
    null = build_null(np.log(values), aa_deviations(aa_windows()), k=3)
    assert null is not None
    found = [cp for cp in detect(values, null) if cp.regression]
    assert len(found) == 1
    cp = found[0]
    assert cp.index == 6 and cp.confirmed and cp.open and cp.runs_after == 6
    assert 1.15 < cp.ratio < 1.25 and cp.ci95[0] > 1.1 and cp.false_alarm_rate < FA_TARGET


def test_a_step_in_the_last_run_is_only_suspected() -> None:
    values = history(10, 9, 0.30)
    null = build_null(np.log(values), aa_deviations(aa_windows()), k=3)
    assert null is not None
    found = [cp for cp in detect(values, null) if cp.regression]
    assert len(found) == 1 and found[0].index == 9 and not found[0].confirmed and found[0].runs_after == 1


def test_a_fixed_regression_is_not_open_and_faster_is_not_a_regression() -> None:
    values = history(15, 5, 0.25)
    values[10:] = [v / 1.25 for v in values[10:]]
    null = build_null(np.log(values), aa_deviations(aa_windows()), k=3)
    assert null is not None
    found = detect(values, null)
    regressions = [cp for cp in found if cp.regression]
    assert [cp.index for cp in regressions] == [5] and not regressions[0].open
    assert any(cp.index == 10 and not cp.regression for cp in found)
    rps = detect(history(12, 6, 0.20), null, worse_up=False)  # more requests per second: better
    assert rps and not any(cp.regression for cp in rps)


def test_false_alarms_stay_near_the_target_on_step_free_series() -> None:
    dev = aa_deviations(aa_windows(runs=10))
    alarms = 0
    for seed in range(100):
        values = history(12, None, 0.0, seed=seed + 1)
        null = build_null(np.log(values), dev, k=3)
        assert null is not None
        alarms += any(cp.regression and cp.confirmed for cp in detect(values, null, seed=seed))
    assert alarms <= 5  # FA_TARGET is 1 %; noise estimated from 30 windows wobbles


def test_null_needs_a_few_aa_windows_and_thresholds_grow_with_noise() -> None:
    assert build_null(np.zeros(8), np.zeros(2), k=3) is None
    quiet = build_null(np.zeros(8), aa_deviations(aa_windows(sd=0.01)), k=3)
    loud = build_null(np.zeros(8), aa_deviations(aa_windows(sd=0.10)), k=3)
    assert quiet is not None and loud is not None
    assert np.quantile(null_max_gains(loud, 8), 0.99) > 10 * np.quantile(null_max_gains(quiet, 8), 0.99)


def test_t_test_detector_finds_a_big_step() -> None:
    assert t_test_detect(history(12, 6, 0.20)) == 6


def test_t_test_detector_picks_the_split_scipy_picks() -> None:
    # all splits at once must choose as scipy's Welch test split by split would (flat sides too)
    import warnings

    from scipy import stats as sps

    rng = np.random.default_rng(3)
    for i in range(300):
        x = np.exp(rng.normal(0, 0.1, int(rng.integers(4, 14))))
        x[x.size // 2:] *= 1.2 if i % 2 else 1.0
        if i % 10 == 0:
            x[:2], x[2:] = 1.0, 2.0  # no spread on either side
        logs, best = np.log(x), None
        for cp in range(2, x.size - 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(sps.ttest_ind(logs[:cp], logs[cp:], equal_var=False).pvalue)
            if math.isfinite(p) and p < 0.05 and (best is None or p < best[0]):
                best = (p, cp)
        assert t_test_detect(list(x)) == (None if best is None else best[1]), x


def test_a_null_drawn_once_judges_as_one_drawn_per_call() -> None:
    null = build_null(np.zeros(12), aa_deviations(aa_windows()), k=3)
    assert null is not None
    series = history(12, 6, 0.20)
    assert detect(series, null, seed=4) == detect(series, null, seed=4, null_max=null_max_gains(null, 12, seed=4))


def test_between_run_shifts_come_from_consecutive_aa_levels() -> None:
    from tasks.analysis.changepoints import aa_shifts

    assert aa_shifts([[100.0, 100.0], [110.0, 110.0]]).size == 0  # two runs: too few
    shifts = aa_shifts([[100.0], [100.0, 100.0], [200.0, 200.0], [200.0]])
    assert sorted(np.round(shifts, 6)) == sorted(np.round([0, 0, math.log(2) / math.sqrt(2), 0, 0,
                                                           -math.log(2) / math.sqrt(2)], 6))
    null = build_null(np.zeros(6), aa_deviations(aa_windows()), k=3, shifts=shifts)
    assert null is not None and null.tau == 0 and null.shifts.size == 6
