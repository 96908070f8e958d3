"""Steady-state detection: the measured part starts where the latency series stops changing level."""

from __future__ import annotations

import numpy as np
import polars as pl

from tasks.load.steady import steady_start

RPS = 100


def series(levels: list[tuple[float, float]], seed: int = 0) -> pl.DataFrame:
    """Samples whose latency level is ``ms`` for ``seconds`` each, one after the other from t=0."""
    rng = np.random.default_rng(seed)
    ts, lat, t0 = [], [], 0.0
    for seconds, ms in levels:
        n = int(seconds * RPS)
        ts.append(t0 + np.arange(n) / RPS)
        lat.append(rng.lognormal(np.log(ms), 0.4, n))
        t0 += seconds
    return pl.DataFrame({"ts": np.concatenate(ts), "latency_ms": np.concatenate(lat)})


def test_a_cold_start_is_cut_where_the_level_settles() -> None:
    samples = series([(5.0, 60.0), (20.0, 20.0)])
    steady = steady_start(samples, test_start=0.0, end=25.0, min_start=1.0)
    assert 4.0 <= steady.warmup_s <= 6.0 and steady.change_points >= 1


def test_a_warm_target_loses_only_the_spawn_time() -> None:
    samples = series([(25.0, 20.0)], seed=1)
    steady = steady_start(samples, test_start=0.0, end=25.0, min_start=1.0)
    assert steady.warmup_s == 1.0 and steady.change_points == 0


def test_the_warm_up_is_bounded() -> None:
    samples = series([(20.0, 80.0), (5.0, 20.0)], seed=2)  # still warming at 80 % of the window
    steady = steady_start(samples, test_start=0.0, end=25.0, min_start=1.0, max_start=10.0)
    assert steady.warmup_s <= 10.0


def test_a_late_slow_second_is_not_a_warm_up() -> None:
    samples = series([(18.0, 20.0), (1.0, 200.0), (6.0, 20.0)], seed=3)  # a hiccup past the bound
    steady = steady_start(samples, test_start=0.0, end=25.0, min_start=1.0, max_start=10.0)
    assert steady.warmup_s == 1.0


def test_too_few_samples_fall_back_to_the_spawn_time() -> None:
    samples = series([(0.2, 20.0)])
    steady = steady_start(samples, test_start=0.0, end=25.0, min_start=1.5)
    assert steady.start == 1.5 and "too few" in steady.method
