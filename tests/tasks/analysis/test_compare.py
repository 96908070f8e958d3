from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tasks.analysis.compare import (
    bootstrap_quantiles,
    bootstrap_ratio_ci,
    check_goals,
    check_quality,
    compare_windows,
    decide,
    decide_endpoints,
    noise_floor,
    per_second_rates,
    rank_test,
)
from tasks.analysis.noise import estimate_rps_noise
from tasks.errors import PerfagentsError
from tasks.expressions import parse_expressions


def lognormal(n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).lognormal(mean=3.0, sigma=0.6, size=n)


def window(latencies: np.ndarray, *, endpoint: str = "catalog", t0: float = 1000.0,
           duration_s: float = 20.0) -> pl.DataFrame:
    """A samples frame whose requests are spread evenly over the window."""
    n = latencies.size
    return pl.DataFrame(
        {
            "ts": np.linspace(t0, t0 + duration_s, n, endpoint=False),
            "endpoint": [endpoint] * n,
            "method": ["GET"] * n,
            "latency_ms": latencies,
            "status": pl.Series([200] * n, dtype=pl.Int32),
            "bytes": pl.Series([512] * n, dtype=pl.Int64),
            "error": pl.Series([None] * n, dtype=pl.Utf8),
        }
    )


def test_order_statistic_bootstrap_matches_brute_force_resampling() -> None:
    x = lognormal(1500, seed=3)
    rng = np.random.default_rng(7)
    fast = bootstrap_quantiles(x, 0.95, 4000, rng)
    idx = rng.integers(0, x.size, size=(4000, x.size))
    brute = np.quantile(x[idx], 0.95, axis=1)
    probs = [0.025, 0.25, 0.5, 0.75, 0.975]
    np.testing.assert_allclose(np.quantile(fast, probs), np.quantile(brute, probs), rtol=0.02)
    assert fast.std() == pytest.approx(brute.std(), rel=0.15)


def test_ci_covers_a_known_two_fold_shift() -> None:
    before, after = lognormal(20_000, seed=1), lognormal(20_000, seed=2, scale=0.5)
    ratio, lo, hi = bootstrap_ratio_ci(before, after, q=0.95)
    assert lo < 0.5 < hi
    assert ratio == pytest.approx(0.5, rel=0.05)
    assert hi - lo < 0.1


def test_ci_coverage_over_many_replicates_is_near_nominal() -> None:
    covered = 0
    for rep in range(40):
        before, after = lognormal(3000, seed=100 + rep), lognormal(3000, seed=200 + rep, scale=0.5)
        _, lo, hi = bootstrap_ratio_ci(before, after, q=0.95, seed=rep)
        covered += lo <= 0.5 <= hi
    assert covered >= 34  # nominal 95% of 40 = 38


def test_ci_contains_one_on_aa_data() -> None:
    _, lo, hi = bootstrap_ratio_ci(lognormal(20_000, seed=4), lognormal(20_000, seed=5), q=0.95)
    assert lo < 1.0 < hi


def test_bootstrap_refuses_too_few_samples() -> None:
    with pytest.raises(PerfagentsError, match="before window has 1"):
        bootstrap_ratio_ci(np.array([1.0, np.nan]), lognormal(10, seed=1))


def test_rank_test_is_one_sided_after_smaller() -> None:
    before, after = lognormal(2000, seed=1), lognormal(2000, seed=2, scale=0.8)
    assert rank_test(before, after) < 1e-6
    assert rank_test(after, before) > 0.99


def test_compare_windows_latency_effect_for_one_endpoint() -> None:
    before = pl.concat([window(lognormal(4000, 1)), window(lognormal(500, 9, 50.0), endpoint="slow")])
    after = pl.concat([window(lognormal(4000, 2, 0.5)), window(lognormal(500, 8, 50.0), endpoint="slow")])
    effect = compare_windows(before, after, endpoint="catalog", metric="p95_ms")
    assert set(effect) == {"endpoint", "metric", "before", "after", "ratio", "ci95", "p_value",
                           "n_before", "n_after"}
    assert effect["endpoint"] == "catalog" and effect["n_before"] == effect["n_after"] == 4000
    assert effect["before"] == pytest.approx(np.quantile(lognormal(4000, 1), 0.95), abs=1e-3)
    assert effect["ci95"][0] < 0.5 < effect["ci95"][1] and effect["p_value"] < 1e-6
    total = compare_windows(before, after, endpoint=None, metric="p50_ms")
    assert total["endpoint"] == "total" and total["n_before"] == 4500
    mean = compare_windows(before, after, endpoint="catalog", metric="mean_ms")
    assert mean["ci95"][0] < 0.5 < mean["ci95"][1]


def test_compare_windows_throughput() -> None:
    before = window(lognormal(2000, 1), duration_s=20.0)  # 100 req/s
    after = window(lognormal(4000, 2), duration_s=20.0)  # 200 req/s
    effect = compare_windows(before, after, endpoint=None, metric="rps")
    assert effect["before"] == pytest.approx(100, rel=0.02) and effect["after"] == pytest.approx(200, rel=0.02)
    assert effect["ratio"] == pytest.approx(2.0, rel=0.02) and effect["ci95"][0] > 1.5
    assert effect["p_value"] < 0.001
    assert decide(effect, 0.1, lower_is_better=False)[0]


def test_throughput_of_windows_shorter_than_four_seconds_is_compared_in_sub_second_bins() -> None:
    before = window(lognormal(200, 1), duration_s=2.0)  # 100 req/s
    after = window(lognormal(300, 2), duration_s=2.1)  # ~143 req/s, another length: rates, not counts
    assert per_second_rates(before).size == 4 and per_second_rates(before).mean() == pytest.approx(100, rel=0.05)
    effect = compare_windows(before, after, endpoint=None, metric="rps")
    assert effect["ratio"] == pytest.approx(300 / 2.1 / 100, rel=0.05)
    assert estimate_rps_noise([before, window(lognormal(200, 3), duration_s=2.0)]) < 0.1


def test_compare_windows_refuses_missing_endpoint_and_unknown_metric() -> None:
    w = window(lognormal(100, 1))
    with pytest.raises(PerfagentsError, match="'checkout'"):
        compare_windows(w, w, endpoint="checkout")
    with pytest.raises(PerfagentsError, match="error_rate"):
        compare_windows(w, w, endpoint=None, metric="error_rate")


def test_noise_floor_is_small_for_aa_windows() -> None:
    floor = noise_floor(window(lognormal(20_000, 11)), window(lognormal(20_000, 12)))
    assert 0.0 < floor < 0.1


def test_decide_rejects_aa_and_keeps_a_five_fold_improvement() -> None:
    a, b = window(lognormal(5000, 21)), window(lognormal(5000, 22))
    noise = noise_floor(window(lognormal(5000, 23)), window(lognormal(5000, 24)))
    keep, reason = decide(compare_windows(a, b, endpoint=None), noise)
    assert not keep and "within noise" in reason
    better = window(lognormal(5000, 25, scale=0.2))
    keep, reason = decide(compare_windows(a, better, endpoint=None), noise)
    assert keep and reason.startswith("p95 ratio 0.2") and "beyond noise" in reason
    worse = window(lognormal(5000, 26, scale=5.0))
    assert not decide(compare_windows(a, worse, endpoint=None), noise)[0]


def test_decide_needs_significance_and_respects_direction() -> None:
    effect = {"metric": "p95_ms", "ratio": 0.5, "ci95": [0.4, 0.6], "p_value": 0.2}
    keep, reason = decide(effect, 0.05)
    assert not keep and "p=0.2" in reason
    assert decide({**effect, "p_value": 0.001}, 0.05)[0]
    assert not decide({**effect, "p_value": 0.001}, 0.7)[0]  # 0.6 is not below 1 / (1 + 0.7)
    assert not decide({**effect, "p_value": 0.001}, 0.05, lower_is_better=False)[0]


def test_decide_reads_the_noise_floor_as_a_ratio_both_ways() -> None:
    # an unindexed baseline whose A/A p95s fell on either side of a slow endpoint's tail: floor 1.378
    index = {"metric": "p95_ms", "ratio": 0.04, "ci95": [0.03, 0.065], "p_value": 1e-49}
    keep, reason = decide(index, 1.378)
    assert keep, reason
    assert not decide({**index, "ratio": 0.5, "ci95": [0.45, 0.55]}, 1.378)[0]  # 2x is within a 2.378x floor
    slower = {"metric": "p95_ms", "ratio": 2.5, "ci95": [2.4, 2.6], "p_value": 1.0}
    assert "worse, beyond noise" in decide(slower, 1.378)[1]
    throughput = {"metric": "rps", "ratio": 0.4, "ci95": [0.38, 0.41], "p_value": 1.0}
    assert "worse, beyond noise" in decide(throughput, 1.378, lower_is_better=False)[1]


STATS = {
    "endpoints": {
        "checkout": {"requests": 100, "rps": 5.0, "p50_ms": 40.0, "p95_ms": 250.0, "p99_ms": 400.0,
                     "error_rate": 0.02, "mean_ms": 60.0},
        "catalog": {"requests": 900, "rps": 45.0, "p50_ms": 5.0, "p95_ms": 20.0, "p99_ms": 30.0,
                    "error_rate": 0.0, "mean_ms": 7.0},
    },
    "total": {"requests": 1000, "rps": 50.0, "p50_ms": 6.0, "p95_ms": 90.0, "p99_ms": 300.0,
              "error_rate": 0.002, "mean_ms": 12.0},
}
BASELINE = {
    "endpoints": {"checkout": {"p95_ms": 200.0, "p99_ms": 300.0}},
    "total": {"p95_ms": 100.0, "p99_ms": 250.0, "rps": 40.0},
}


def test_check_quality_reports_only_broken_thresholds() -> None:
    exprs = parse_expressions([
        "error_rate<=0.01",  # holds on the total
        "error_rate[checkout]<=0.01",  # broken on the endpoint
        "p99_ms<=1.1*baseline",  # 300 > 275: broken
        "p95_ms<=1.1*baseline",  # 90 <= 110: holds
        "p95_ms[checkout]<=1.1*baseline",  # 250 > 220: broken
        "responses==baseline",  # checked elsewhere
        "lcp_ms<=2500",  # not a request metric: the frontend agent checks it
        "p95_ms[missing]<=100",
    ])
    broken = check_quality(exprs, STATS, BASELINE)
    assert len(broken) == 4
    assert broken[0].startswith("error_rate[checkout]<=0.01: observed 0.02")
    assert broken[1] == "p99_ms<=1.1*baseline: observed 300, threshold 275"
    assert broken[2].startswith("p95_ms[checkout]<=1.1*baseline: observed 250, threshold 220")
    assert "'missing'" in broken[3]
    assert check_quality(parse_expressions(["p95_ms[catalog]<=1.1*baseline"]), STATS, BASELINE) == [
        "p95_ms[catalog]<=1.1*baseline: 'p95_ms[catalog]<=1.1*baseline' is relative to a baseline that has no p95_ms"
    ]


def test_check_goals_follows_the_json_contract() -> None:
    goals = check_goals(parse_expressions(["p95_ms<=100", "rps>=60", "p95_ms[checkout]<=200",
                                           "rps>=1.2*baseline", "p95_ms[gone]<=1"]), STATS, BASELINE)
    assert goals == [
        {"expr": "p95_ms<=100", "met": True, "value": 90.0},
        {"expr": "rps>=60", "met": False, "value": 50.0},
        {"expr": "p95_ms[checkout]<=200", "met": False, "value": 250.0},
        {"expr": "rps>=1.2*baseline", "met": True, "value": 50.0},
        {"expr": "p95_ms[gone]<=1", "met": False, "value": None},
    ]


def test_decide_endpoints_keeps_a_change_that_speeds_some_and_slows_none() -> None:
    # the slow endpoint dominates the total's p95 and does not move; the cheap ones get 2x faster
    before = pl.concat([window(lognormal(600, 1), endpoint="page"), window(lognormal(600, 2), endpoint="account"),
                        window(lognormal(300, 3, 20.0), endpoint="report")])
    after = pl.concat([window(lognormal(600, 4, 0.5), endpoint="page"), window(lognormal(600, 5, 0.5), endpoint="account"),
                       window(lognormal(300, 6, 20.0), endpoint="report")])
    total = compare_windows(before, after, metric="p95_ms")
    assert not decide(total, 0.1)[0]  # the total hides it
    keep, reason, effect = decide_endpoints(before, after, 0.1)
    assert keep and effect is not None and effect["endpoint"] in {"page", "account"} and effect["ratio"] < 0.7
    assert "page" in reason and "account" in reason and "worse on none of 3" in reason

    slower = pl.concat([after.filter(pl.col("endpoint") != "report"),
                        window(lognormal(300, 7, 60.0), endpoint="report")])
    keep, reason, effect = decide_endpoints(before, slower, 0.1)
    assert not keep and effect is not None and effect["endpoint"] == "report" and "worse" in reason

    same = pl.concat([window(lognormal(600, 8), endpoint="page"), window(lognormal(600, 9), endpoint="account"),
                      window(lognormal(300, 10, 20.0), endpoint="report")])
    assert not decide_endpoints(before, same, 0.1)[0]
    assert decide_endpoints(before.head(10), after.head(10), 0.1) == (False, "no endpoint has 50 requests on both sides", None)
