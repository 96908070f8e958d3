from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from tasks.analysis.capacity import (
    CapacityError,
    UslFit,
    capacity_json,
    choose_holdout,
    compute_peak,
    fit_usl,
    holdout_error,
    read_step_plan,
    recommend,
    step_plan,
    throughput_by_level,
    usl,
)
from tasks.errors import PerfagentsError

# SPEC SDM91 benchmark as quoted in Gunther, Guerrilla Capacity Planning (2007), and the issue
SDM91_N = [1, 18, 36, 72, 108, 144, 216]
SDM91_X = [65, 996, 1652, 1853, 1829, 1775, 1702]

TRUE_LAM, TRUE_SIGMA, TRUE_KAPPA = 100.0, 0.05, 0.002
LEVELS = np.array([1, 2, 4, 8, 12, 16, 24, 32, 48, 64], dtype=float)


def noisy_usl(seed: int, noise: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return usl(LEVELS, TRUE_LAM, TRUE_SIGMA, TRUE_KAPPA) * (
        1 + noise * rng.standard_normal(LEVELS.size)
    )


def test_fit_reproduces_gunther_sdm91_within_one_percent():
    fit = fit_usl(SDM91_N, SDM91_X)
    assert fit.sigma == pytest.approx(0.02773, rel=0.01)
    assert fit.kappa == pytest.approx(0.0001043, rel=0.01)
    assert fit.lam == pytest.approx(89.99, rel=0.01)
    assert fit.peak_concurrency == pytest.approx(96, rel=0.01)
    assert fit.peak_throughput == pytest.approx(float(fit.predict(fit.peak_concurrency)))
    assert fit.peak_throughput > max(fit.predict(n) for n in SDM91_N)
    assert fit.r2 > 0.98 and fit.n_points == 7 and fit.n_max == 216


def test_fixed_lambda_uses_throughput_at_one_user():
    fit = fit_usl(SDM91_N, SDM91_X, free_lambda=False)
    assert fit.lam == 65.0 and fit.lam_stderr == 0.0 and not fit.free_lambda
    free = fit_usl(SDM91_N, SDM91_X)
    assert fit.sigma < free.sigma  # a lower lambda leaves less contention to explain
    with pytest.raises(CapacityError, match="concurrency 1"):
        fit_usl([2, 4, 8, 16], [20, 38, 70, 110], free_lambda=False)


def test_fit_recovers_known_parameters_from_noisy_data():
    fit = fit_usl(LEVELS, noisy_usl(seed=7))
    truth = {"lam": TRUE_LAM, "sigma": TRUE_SIGMA, "kappa": TRUE_KAPPA}
    for name, true in truth.items():
        estimate, stderr = getattr(fit, name), getattr(fit, f"{name}_stderr")
        assert abs(estimate - true) < 3 * stderr, name
        assert estimate == pytest.approx(true, rel=0.25), name
    assert fit.peak_concurrency == pytest.approx(math.sqrt((1 - TRUE_SIGMA) / TRUE_KAPPA), rel=0.1)


def test_standard_errors_cover_the_truth_at_the_nominal_rate():
    covered = np.zeros(3)
    runs = 100
    for seed in range(runs):
        fit = fit_usl(LEVELS, noisy_usl(seed))
        estimates = np.array([fit.lam, fit.sigma, fit.kappa])
        stderrs = np.array([fit.lam_stderr, fit.sigma_stderr, fit.kappa_stderr])
        covered += np.abs(estimates - [TRUE_LAM, TRUE_SIGMA, TRUE_KAPPA]) < 2 * stderrs
    assert (covered / runs >= 0.85).all(), covered / runs  # nominal 95%


def test_holdout_error_is_small_on_clean_data_and_large_on_a_wrong_model():
    x = usl(LEVELS, TRUE_LAM, TRUE_SIGMA, TRUE_KAPPA)
    held = choose_holdout(LEVELS)
    assert held and min(LEVELS) not in held and max(LEVELS) not in held
    result = holdout_error(LEVELS, x, held)
    assert result["levels"] == held and len(result["predicted"]) == len(held)
    assert result["mape"] < 0.01
    # a throughput plateau with a sudden collapse is not a USL curve: the error shows it
    broken = np.where(LEVELS >= 24, x * 0.5, x)
    assert holdout_error(LEVELS, broken, [24.0])["mape"] > 0.2


def test_choose_holdout_keeps_enough_levels_to_fit():
    assert choose_holdout([1, 2, 4, 8]) == []
    assert choose_holdout([1, 2, 4, 8, 16]) == [4.0]
    kept = set(LEVELS) - set(choose_holdout(LEVELS))
    assert len(kept) >= 4


@pytest.mark.parametrize(
    ("n", "x", "message"),
    [
        ([1, 2], [10, 19], "at least 3 distinct"),
        ([1, 1, 1, 2], [10, 10, 10, 19], "at least 3 distinct"),
        ([1, 2, 0], [10, 19, 25], "positive"),
        ([1, 2, 4], [10, -19, 25], "positive"),
        ([1, 2, 4], [10, float("nan"), 25], "NaN"),
        ([1, 2, 4], [10, 19], "3 concurrency levels but 2"),
        ([1, 2, "many"], [10, 19, 25], "not numbers"),
    ],
)
def test_bad_points_raise_one_line_capacity_error(n, x, message):
    with pytest.raises(CapacityError, match=message) as info:
        fit_usl(n, x)
    assert isinstance(info.value, PerfagentsError) and "\n" not in str(info.value)


def test_holdout_rejects_unmeasured_levels():
    with pytest.raises(CapacityError, match="not measured"):
        holdout_error(LEVELS, usl(LEVELS, 100, 0.05, 0.002), [3.0])
    with pytest.raises(CapacityError, match="at least one"):
        holdout_error(LEVELS, usl(LEVELS, 100, 0.05, 0.002), [])


def make_fit(peak_rps: float, peak_n: float = 20.0, n_max: float = 64.0) -> UslFit:
    """A USL curve with sigma = 0 that peaks at peak_rps when peak_n users are offered."""
    return UslFit(
        sigma=0.0, kappa=1.0 / peak_n**2, lam=peak_rps * (2 - 1 / peak_n) / peak_n,
        sigma_stderr=0.0, kappa_stderr=0.0, lam_stderr=0.0, r2=1.0,
        peak_concurrency=peak_n, peak_throughput=peak_rps, n_points=8, n_max=n_max,
    )  # fmt: skip


def test_make_fit_helper_is_a_consistent_usl_curve():
    fit = make_fit(100.0)
    assert fit.predict(fit.peak_concurrency) == pytest.approx(100.0, rel=0.01)


def test_recommend_picks_the_cheaper_fleet():
    one_worker, four_workers = make_fit(100.0), make_fit(300.0)
    prices = {"usd_per_worker_hour": 0.05, "usd_per_instance_hour": 0.10}
    # 6 x (0.10 + 0.05) = 0.90 $/h against 2 x (0.10 + 0.20) = 0.60 $/h
    rec = recommend(
        one_worker, 600, per_instance_workers=1, alternatives={4: four_workers}, **prices
    )
    assert rec["feasible"] and (rec["workers"], rec["instances"]) == (4, 2)
    assert rec["usd_per_hour"] == pytest.approx(0.60)
    # workers dearer than instances: many one-worker instances win
    dear = {"usd_per_worker_hour": 1.0, "usd_per_instance_hour": 0.01}
    rec = recommend(one_worker, 600, per_instance_workers=1, alternatives={4: four_workers}, **dear)
    assert (rec["workers"], rec["instances"]) == (1, 6)
    assert rec["usd_per_hour"] == pytest.approx(6 * 1.01)
    assert "load balancer" in rec["reason"]


def test_recommend_single_fit_uses_the_fewest_instances_that_meet_the_goal():
    rec = recommend(make_fit(100.0), 250, per_instance_workers=2,
                    usd_per_worker_hour=0.05, usd_per_instance_hour=0.0)  # fmt: skip
    assert (rec["workers"], rec["instances"]) == (2, 3)
    assert rec["usd_per_hour"] == pytest.approx(0.30)
    assert rec["capacity_rps_per_instance"] == pytest.approx(100.0, rel=0.01)


def test_recommend_is_infeasible_when_max_instances_cannot_reach_the_goal():
    rec = recommend(make_fit(100.0), 1000, per_instance_workers=1, max_instances=5,
                    usd_per_worker_hour=0.05, usd_per_instance_hour=0.1)  # fmt: skip
    assert not rec["feasible"] and rec["instances"] is None and rec["usd_per_hour"] is None
    assert "max_instances=5" in rec["reason"] and "10 instances" in rec["reason"]
    with pytest.raises(CapacityError, match="positive"):
        recommend(
            make_fit(100.0),
            0,
            per_instance_workers=1,
            usd_per_worker_hour=0,
            usd_per_instance_hour=0,
        )


def test_recommend_does_not_extrapolate_past_the_measured_range():
    # peak at 100 users but only 10 measured: capacity is what the curve gives at 10
    fit = make_fit(1000.0, peak_n=100.0, n_max=10.0)
    rec = recommend(
        fit, 500, per_instance_workers=1, usd_per_worker_hour=1, usd_per_instance_hour=0
    )
    assert rec["capacity_rps_per_instance"] == pytest.approx(float(fit.predict(10.0)))
    assert rec["instances"] == math.ceil(500 / float(fit.predict(10.0)))
    assert "beyond the measured range" in rec["reason"]


def test_capacity_json_matches_the_design_contract_and_is_serialisable():
    fit = fit_usl(SDM91_N, SDM91_X)
    rec = recommend(
        fit, 5000, per_instance_workers=1, usd_per_worker_hour=0.05, usd_per_instance_hour=0.1
    )
    held = holdout_error(SDM91_N, SDM91_X, [72])
    block = capacity_json(fit, rec, held)
    contract = {"sigma", "kappa", "lambda", "peak_concurrency", "peak_rps", "recommendation"}
    assert contract <= set(block)
    assert {"goal_rps", "workers", "instances", "usd_per_hour"} <= set(block["recommendation"])
    assert block["recommendation"]["instances"] == 3  # 5000 / ~1883 rps per instance
    assert block["stderr"]["kappa"] > 0 and block["holdout"]["levels"] == [72.0]
    assert json.loads(json.dumps(block, allow_nan=False)) == block


def test_capacity_json_flags_an_extrapolated_peak_and_nulls_an_unbounded_one():
    linear = fit_usl([1, 2, 4, 8], [10, 20, 40, 80])  # no sign of a peak
    assert linear.kappa == pytest.approx(0.0, abs=1e-9) and linear.peak_concurrency > 8
    block = capacity_json(
        linear, {"goal_rps": 100, "workers": 1, "instances": 2, "usd_per_hour": 1.0}
    )
    assert block["peak_within_measured_range"] is False
    assert capacity_json(fit_usl(SDM91_N, SDM91_X), {})["peak_within_measured_range"] is True
    assert compute_peak(10.0, 0.0, 0.0) == (math.inf, math.inf)
    assert compute_peak(10.0, 0.1, 0.0) == (math.inf, pytest.approx(100.0))  # the asymptote
    unbounded = replace(
        make_fit(100.0), kappa=0.0, peak_concurrency=math.inf, peak_throughput=math.inf
    )
    block = capacity_json(unbounded, {})
    assert block["peak_concurrency"] is None and block["peak_rps"] is None
    json.dumps(block, allow_nan=False)


def test_step_plan_is_contiguous_and_round_trips_through_a_plan_file(tmp_path):
    plan = step_plan([1, 2, 4], 2.0, 1000.0)
    assert [s["users"] for s in plan] == [1, 2, 4]
    assert [(s["start_ts"], s["end_ts"]) for s in plan] == [
        (1000, 1002),
        (1002, 1004),
        (1004, 1006),
    ]
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps({"levels": [1, 2, 4], "step_s": 2.0, "spawn_rate": 4, "start_ts": 1000.0})
    )
    assert read_step_plan(path) == plan
    with pytest.raises(CapacityError, match="cannot read step plan"):
        read_step_plan(tmp_path / "missing.json")
    with pytest.raises(CapacityError):
        step_plan([], 2.0, 0.0)


def synthetic_samples(plan: list[dict], rates: list[int], fail_every: int = 0) -> pl.DataFrame:
    ts, errors = [], []
    for step, rate in zip(plan, rates, strict=True):
        times = np.arange(step["start_ts"], step["end_ts"], 1.0 / rate)
        ts.extend(times.tolist())
        errors.extend(
            "HTTP 500" if fail_every and i % fail_every == 0 else None for i in range(times.size)
        )
    n = len(ts)
    return pl.DataFrame(
        {"ts": ts, "endpoint": ["/"] * n, "method": ["GET"] * n, "latency_ms": [1.0] * n,
         "status": [200] * n, "bytes": [10] * n, "error": errors},
        schema={"ts": pl.Float64, "endpoint": pl.Utf8, "method": pl.Utf8, "latency_ms": pl.Float64,
                "status": pl.Int32, "bytes": pl.Int64, "error": pl.Utf8},
    )  # fmt: skip


def test_throughput_by_level_counts_successes_per_second_after_the_ramp():
    plan = step_plan([1, 2, 4], 10.0, 5000.0)
    samples = synthetic_samples(plan, [10, 20, 40], fail_every=4)
    # a burst during the ramp of the first step must not count
    burst = samples.head(1).with_columns(pl.Series("ts", [5000.5]))
    samples = pl.concat([samples, pl.concat([burst] * 500)])
    table = throughput_by_level(samples, plan, ramp_s=2.0)
    assert table["users"].to_list() == [1, 2, 4]
    assert table["seconds"].to_list() == [8, 8, 8]
    assert table["rps"].to_list() == pytest.approx([7.5, 15.0, 30.0], abs=0.2)  # 1 in 4 failed
    assert table["failures"].to_list() == pytest.approx([20, 40, 80], abs=2)
    assert (table["rps_std"] < 1.0).all()
    assert (table["rps_min"] <= table["rps"]).all() and (table["rps"] <= table["rps_max"]).all()


def test_throughput_by_level_shows_uneven_seconds_as_spread():
    plan = step_plan([1], 6.0, 0.0)
    ts = [0.5] * 3 + [1.5] * 10 + [2.5] * 30 + [3.5] * 10 + [4.5] * 30 + [5.5] * 10
    samples = pl.DataFrame(
        {"ts": ts, "error": [None] * len(ts)}, schema={"ts": pl.Float64, "error": pl.Utf8}
    )
    row = throughput_by_level(samples, plan, ramp_s=1.0).row(0, named=True)
    assert row["seconds"] == 5 and row["rps"] == pytest.approx(18.0)
    assert (row["rps_min"], row["rps_max"]) == (10.0, 30.0) and row["rps_std"] > 9


def test_throughput_by_level_refuses_steps_too_short_to_measure():
    samples = synthetic_samples(step_plan([1], 1.0, 0.0), [10])
    with pytest.raises(CapacityError, match="under 1 s"):
        throughput_by_level(samples, step_plan([1], 1.0, 0.0))
    with pytest.raises(CapacityError, match="lack columns"):
        throughput_by_level(samples.drop("error"), step_plan([1], 5.0, 0.0))
