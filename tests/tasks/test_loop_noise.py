"""A change aimed at one endpoint is judged against that endpoint's own noise floor."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl

from tasks.loop import endpoint_noise


def baseline_window(seed: int, slow_share: float) -> SimpleNamespace:
    """A steady catalog (lognormal around 5 ms) beside a slow tail that decides the total's p95."""
    rng = np.random.default_rng(seed)
    n_catalog, n_slow, n_rare = 2000, int(2000 * slow_share), 20
    latencies = np.concatenate([rng.lognormal(np.log(5.0), 0.3, n_catalog), rng.lognormal(np.log(300.0), 0.2, n_slow),
                                rng.lognormal(np.log(5.0), 0.3, n_rare)])
    names = ["catalog"] * n_catalog + ["orders"] * n_slow + ["rare"] * n_rare
    return SimpleNamespace(samples=pl.DataFrame({"endpoint": names, "latency_ms": latencies,
                                                 "ts": np.linspace(0.0, 20.0, len(names))}))


def test_an_endpoint_gets_its_own_floor_and_a_rare_one_the_totals() -> None:
    run = SimpleNamespace(noise_rel=1.378, extra={}, baseline_aa=[baseline_window(0, 0.04), baseline_window(1, 0.07)])
    catalog = endpoint_noise(run, "catalog")
    assert 0.02 <= catalog < 0.2  # a few percent, not the total's 1.378
    assert endpoint_noise(run, "rare") == 1.378  # 20 requests a window: too few for a floor of its own
    assert endpoint_noise(run, None) == 1.378
    assert run.extra["noise"]["endpoint_p95_rel"] == {"catalog": catalog, "rare": 1.378}


def test_one_baseline_window_leaves_the_totals_floor() -> None:
    run = SimpleNamespace(noise_rel=0.1, extra={}, baseline_aa=[baseline_window(0, 0.05)])
    assert endpoint_noise(run, "catalog") == 0.1
