"""Synthetic samples frames (the load runner's schema) for the decision tests, as fixtures."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

N = 2000


def window(rng: np.random.Generator, scale: float = 1.0, n: int = N, *, endpoint: str = "a",
           rps: float = 150.0, error_every: int = 0, start: float = 0.0) -> pl.DataFrame:
    """Lognormal latencies around 20 ms x ``scale``, ``rps`` requests a second."""
    errors = [("boom" if error_every and i % error_every == 0 else None) for i in range(n)]
    return pl.DataFrame({
        "ts": start + np.arange(n) / rps, "endpoint": [endpoint] * n, "method": ["GET"] * n,
        "latency_ms": rng.lognormal(np.log(20.0 * scale), 0.5, n), "status": [200] * n,
        "bytes": [100] * n, "error": errors,
    }, schema_overrides={"status": pl.Int32, "error": pl.Utf8})


def arm(rng: np.random.Generator, k: int, scale: float = 1.0, tau: float = 0.0, **kw: object) -> list[pl.DataFrame]:
    """k windows whose level wanders between windows by a log-normal factor of sd ``tau``."""
    return [window(rng, scale * float(np.exp(rng.normal(0.0, tau))) if tau else scale, **kw) for _ in range(k)]


@pytest.fixture
def make_window() -> Callable[..., pl.DataFrame]:
    return window


@pytest.fixture
def make_arm() -> Callable[..., list[pl.DataFrame]]:
    return arm
