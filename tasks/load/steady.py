"""Where a window's steady state starts: change-point detection on its latency series.

A fixed warm-up is wrong both ways (Barrett et al., "Virtual Machine Warmup Blows Hot and
Cold", OOPSLA 2017): a warm target wastes it, a cold one (an index just built, a restarted
worker, an emptied cache) is still warming when measuring starts. So the measured part of a
window starts where the latency series stops changing level:

- the series is the mean log latency of the requests in each bin (1 s; shorter windows get
  at least MIN_BINS bins) from the test's start;
- PELT (``ruptures``, least-squares cost) finds the level changes, with a penalty of
  PENALTY_FACTOR * sigma^2 * log(bins), sigma estimated robustly from the bin-to-bin
  differences (MAD), so a noisy series is not cut at every wiggle;
- the steady state starts at the last change point before ``max_start`` (a bound: the
  measured part keeps at least 1 - MAX_WARMUP_SHARE of the window), and never before every
  user was spawned (``min_start``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

BIN_S = 1.0
MIN_BINS = 8  # a short window is cut into at least this many bins
MIN_SEGMENT_BINS = 2
PENALTY_FACTOR = 3.0
MAX_WARMUP_SHARE = 0.4  # the steady part keeps at least 60 % of the window


@dataclass(frozen=True)
class SteadyState:
    start: float  # epoch s: where the measured part starts
    warmup_s: float  # start - test start
    change_points: int  # level changes found before the bound
    method: str


def steady_start(samples: pl.DataFrame, *, test_start: float, end: float, min_start: float,
                 max_start: float | None = None) -> SteadyState:
    """The start of the steady state among ``samples`` (ts, latency_ms) of [test_start, end)."""
    if max_start is None:
        max_start = test_start + MAX_WARMUP_SHARE * (end - test_start)
    max_start = max(min_start, max_start)
    frame = samples.filter((pl.col("ts") >= test_start) & (pl.col("ts") < end) & pl.col("latency_ms").is_not_null())
    span = end - test_start
    width = min(BIN_S, span / MIN_BINS) if span > 0 else BIN_S
    if frame.height < 4 * MIN_BINS or span <= 0:
        return SteadyState(min_start, min_start - test_start, 0, "too few samples: spawn time")
    series = (frame.with_columns(((pl.col("ts") - test_start) / width).floor().cast(pl.Int64).alias("bin"),
                                 pl.col("latency_ms").clip(lower_bound=1e-3).log().alias("log_ms"))
              .group_by("bin").agg(pl.col("log_ms").mean()).sort("bin"))
    bins = series.get_column("bin").to_numpy()
    signal = series.get_column("log_ms").to_numpy().astype(np.float64)
    if signal.size < 2 * MIN_SEGMENT_BINS + 1:
        return SteadyState(min_start, min_start - test_start, 0, "too few bins: spawn time")
    breaks = _change_points(signal)
    cut = min_start
    found = 0
    for index in breaks:
        at = test_start + float(bins[index]) * width
        if at <= max_start:
            found += 1
            cut = max(cut, at)
    return SteadyState(cut, cut - test_start, found, "pelt-l2")


def _change_points(signal: np.ndarray) -> list[int]:
    """Indices where a new level starts (PELT, least squares, robust BIC-like penalty)."""
    import ruptures as rpt  # imported lazily: numba-free, but it pulls in scipy.signal

    diffs = np.diff(signal)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    sigma2 = (1.4826 * mad) ** 2 / 2.0 if mad > 0 else float(np.var(signal)) or 1e-6
    penalty = PENALTY_FACTOR * sigma2 * math.log(signal.size)
    ends = rpt.Pelt(model="l2", min_size=MIN_SEGMENT_BINS, jump=1).fit(signal.reshape(-1, 1)).predict(pen=penalty)
    return [e for e in ends if e < signal.size]
