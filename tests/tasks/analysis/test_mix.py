"""The total's percentiles at a fixed request mix: the endpoints a window drew are not noise."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tasks.analysis.compare import bootstrap_quantiles
from tasks.analysis.mix import endpoint_mix, quantile_draws
from tasks.analysis.noise import estimate_noise
from tasks.decisions.rule import judge


def window(rng: np.random.Generator, n: int = 1000, slow_share: float = 0.07, slow_ms: float = 150.0,
           fast_ms: float = 5.0) -> pl.DataFrame:
    """A shop-like window: a few slow scans among many fast requests, the mix drawn at random."""
    slow = rng.random(n) < slow_share
    latency = np.where(slow, rng.lognormal(np.log(slow_ms), 0.3, n), rng.lognormal(np.log(fast_ms), 0.4, n))
    return pl.DataFrame({"ts": np.arange(n) / 50.0, "endpoint": np.where(slow, "scan", "page"),
                         "latency_ms": latency})


def test_the_mix_is_each_endpoints_share_of_all_timed_requests() -> None:
    a = pl.DataFrame({"endpoint": ["x", "x", "y"], "latency_ms": [1.0, 2.0, None]})
    b = pl.DataFrame({"endpoint": ["y", "y", "x"], "latency_ms": [3.0, 4.0, 5.0]})
    assert endpoint_mix([a, b]) == {"x": 0.6, "y": 0.4}
    assert endpoint_mix([pl.DataFrame({"latency_ms": [1.0]})]) == {}


def test_one_endpoint_gives_the_plain_quantile_and_bootstrap() -> None:
    frame = window(np.random.default_rng(0), slow_share=0.0)
    one = {"page": 1.0}
    point, draws = quantile_draws(frame, 0.95, 500, np.random.default_rng(1), one)
    values = frame.get_column("latency_ms").to_numpy()
    assert point == pytest.approx(float(np.quantile(values, 0.95)))
    assert np.array_equal(draws, bootstrap_quantiles(values, 0.95, 500, np.random.default_rng(1)))


def test_a_window_that_drew_more_slow_requests_keeps_its_p95_at_the_reference_mix() -> None:
    rng = np.random.default_rng(2)
    few, many = window(rng, 4000, slow_share=0.055), window(rng, 4000, slow_share=0.085)
    mix = endpoint_mix([few, many])
    plain = [float(np.quantile(w.get_column("latency_ms").to_numpy(), 0.95)) for w in (few, many)]
    mixed = [quantile_draws(w, 0.95, 200, rng, mix)[0] for w in (few, many)]  # type: ignore[index]
    assert plain[1] / plain[0] > 1.3  # the draw of the mix alone moved the plain p95 by a third
    assert abs(mixed[1] / mixed[0] - 1.0) < 0.12


def test_holding_each_endpoints_count_narrows_the_bootstrap() -> None:
    frame = window(np.random.default_rng(3))
    values = frame.get_column("latency_ms").to_numpy()
    free = np.std(np.log(bootstrap_quantiles(values, 0.95, 2000, np.random.default_rng(4))))
    _, draws = quantile_draws(frame, 0.95, 2000, np.random.default_rng(4), endpoint_mix([frame]))
    assert np.std(np.log(draws)) < 0.8 * free


def test_the_shop_like_floor_drops_and_a_real_change_of_the_slow_endpoint_still_shows() -> None:
    rng = np.random.default_rng(5)
    aa = [window(rng) for _ in range(4)]
    floor = estimate_noise(aa)
    assert floor.noise_rel < 0.3
    slower = [window(rng, slow_ms=150.0 * 1.5) for _ in range(3)]  # the scans got 1.5x slower
    verdict = judge(aa[:3], slower, metric="p95_ms")
    assert verdict.outcome == "worse", verdict.reason
    null = judge(aa[:2], aa[2:], metric="p95_ms")
    assert null.outcome != "better" and null.outcome != "worse", null.reason


def test_a_large_window_is_bootstrapped_in_bounded_blocks() -> None:
    frame = window(np.random.default_rng(6), n=30_000)
    point, draws = quantile_draws(frame, 0.95, 300, np.random.default_rng(7), endpoint_mix([frame]))
    assert draws.shape == (300,) and np.isfinite(draws).all()
    assert 0.9 < float(np.median(draws)) / point < 1.1
