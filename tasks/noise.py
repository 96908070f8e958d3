"""The noise floor, measured adaptively: as many A/A windows as the observed variance needs.

A/A windows are windows of one unchanged configuration. Two sources of noise are combined:

- within windows (sampling): for every pair, ``compare.noise_floor`` (max of |1 - p95
  ratio| and the bootstrap CI half-width of the ratio), summarised by the median over pairs.
  More windows cannot shrink it; only longer windows can.
- between windows (the machine: other processes, drift), from 3 windows on: the spread of
  the per-window p95s as the half-width of a 95% interval for the ratio of two windows,
  z * sqrt(2) * CV(p95s).

The estimate is the larger of the two. Throughput has its own floor (``estimate_rps_noise``),
built the same way from the windows' mean requests per second: a p95 floor says nothing of
how much rps moves by itself. Whether the p95s differ by more than sampling
explains is Cochran's Q test on log p95 (each window's standard error from the bootstrap).
Another window is asked for only while the estimate is above ``target_rel``, the windows
disagree beyond sampling (p < ALPHA), and the estimate still moved by ``stable_rel`` or more
(relative) with the last window; never below ``min_windows``, never beyond ``max_windows``
nor the budget (``can_afford``). A quiet machine stops at two windows, a noisy one measures
until the estimate settles: the number of windows is never fixed in advance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import stats as sps

from tasks.compare import (
    bootstrap_mean_ratio_ci,
    bootstrap_quantiles,
    noise_floor,
    per_second_rates,
)
from tasks.errors import InputError

Q = 0.95
TARGET_REL = 0.05  # a noise floor at or below 5 % needs no more windows
STABLE_REL = 0.20  # an estimate that moved by less than 20 % with the last window has settled
MIN_WINDOWS = 2
MAX_WINDOWS = 5
Z95 = 1.959964
MIN_BETWEEN_WINDOWS = 3  # the between-window spread needs at least this many windows
ALPHA = 0.05  # Cochran's Q: windows "disagree" below this p-value
N_BOOT_SE = 500  # bootstrap draws for a window's log-p95 standard error


@dataclass
class NoiseEstimate:
    """The noise floor from the A/A windows so far, and why more are (not) needed."""

    noise_rel: float  # the relative p95 shift noise alone can cause (DESIGN ``noise_floor.p95_rel``)
    windows: int
    pairwise: list[float] = field(default_factory=list)  # compare.noise_floor per pair
    within_rel: float = 0.0
    between_rel: float | None = None
    p95s: list[float] = field(default_factory=list)
    agree_p: float = 1.0  # Cochran's Q p-value: do the windows differ only by sampling?

    def to_dict(self) -> dict[str, object]:
        return {"p95_rel": self.noise_rel, "windows": self.windows, "within_rel": self.within_rel,
                "between_rel": self.between_rel, "p95_ms": self.p95s, "agree_p": self.agree_p}


def _latencies(samples: pl.DataFrame) -> np.ndarray:
    values = samples.get_column("latency_ms").drop_nulls().to_numpy()
    if values.size < 2:
        raise InputError(f"an A/A window has {values.size} latencies; at least 2 are needed")
    return values


def agreement_p(windows: Sequence[pl.DataFrame], q: float = Q, seed: int = 0) -> float:
    """Cochran's Q p-value that the windows' log quantiles differ only by sampling error."""
    rng = np.random.default_rng(seed)
    logs, weights = [], []
    for window in windows:
        values = _latencies(window)
        boot = np.log(np.maximum(bootstrap_quantiles(values, q, N_BOOT_SE, rng), 1e-9))
        logs.append(float(np.log(max(np.quantile(values, q), 1e-9))))
        weights.append(1.0 / max(float(np.var(boot, ddof=1)), 1e-12))
    y, w = np.array(logs), np.array(weights)
    mean = float((w * y).sum() / w.sum())
    cochran_q = float((w * (y - mean) ** 2).sum())
    return float(sps.chi2.sf(cochran_q, df=len(windows) - 1))


def estimate_noise(windows: Sequence[pl.DataFrame], q: float = Q) -> NoiseEstimate:
    """The noise floor from two or more A/A windows' samples (see the module docstring)."""
    if len(windows) < 2:
        raise InputError(f"a noise floor needs at least 2 A/A windows, got {len(windows)}")
    p95s = [float(np.quantile(_latencies(w), q)) for w in windows]
    pairwise = [noise_floor(a, b, q=q) for a, b in itertools.combinations(windows, 2)]
    within = float(np.median(pairwise))
    between = None
    if len(windows) >= MIN_BETWEEN_WINDOWS:
        cv = float(np.std(p95s, ddof=1) / np.mean(p95s))
        between = round(Z95 * math.sqrt(2.0) * cv, 4)
    noise = max(within, between or 0.0)
    return NoiseEstimate(round(noise, 4), len(windows), pairwise, round(within, 4), between,
                         [round(p, 3) for p in p95s], round(agreement_p(windows, q), 4))


def estimate_rps_noise(windows: Sequence[pl.DataFrame]) -> float:
    """The relative rps shift noise alone can cause, from two or more A/A windows' samples.

    Per pair: max(|1 - ratio of mean requests per second|, bootstrap CI half-width), the
    median over pairs; from 3 windows on, at least z * sqrt(2) * CV of the windows' rps.
    """
    if len(windows) < 2:
        raise InputError(f"a noise floor needs at least 2 A/A windows, got {len(windows)}")
    counts = [per_second_rates(w) for w in windows]
    pairwise = []
    for a, b in itertools.combinations(counts, 2):
        ratio, lo, hi = bootstrap_mean_ratio_ci(a, b)
        pairwise.append(max(abs(1.0 - ratio), (hi - lo) / 2.0))
    noise = float(np.median(pairwise))
    if len(windows) >= MIN_BETWEEN_WINDOWS:
        rps = [float(np.mean(c)) for c in counts]
        noise = max(noise, Z95 * math.sqrt(2.0) * float(np.std(rps, ddof=1) / np.mean(rps)))
    return round(noise, 4)


def windows_needed(
    windows: Sequence[pl.DataFrame], *, q: float = Q, target_rel: float = TARGET_REL,
    stable_rel: float = STABLE_REL, min_windows: int = MIN_WINDOWS, max_windows: int = MAX_WINDOWS,
) -> int:
    """How many more A/A windows to measure now: 0 (stop) or 1 (measure another, then ask again)."""
    need, _ = _decide(list(windows), q, target_rel, stable_rel, min_windows, max_windows)
    return need


def _decide(
    windows: list[pl.DataFrame], q: float, target_rel: float, stable_rel: float, min_windows: int,
    max_windows: int,
) -> tuple[int, str]:
    n = len(windows)
    if n >= max_windows:
        return 0, f"{n} windows: the maximum"
    if n < min_windows:
        return 1, f"{n} of at least {min_windows} windows"
    estimate = estimate_noise(windows, q)
    current = estimate.noise_rel
    if current <= target_rel:
        return 0, f"noise {current:.3g} <= target {target_rel:.3g} after {n} windows"
    if estimate.agree_p >= ALPHA:
        return 0, f"noise {current:.3g}: {n} windows agree within sampling error (p={estimate.agree_p:.2g})"
    if n < MIN_BETWEEN_WINDOWS:
        return 1, f"windows disagree beyond sampling (p={estimate.agree_p:.2g}): one more to size it"
    previous = estimate_noise(windows[:-1], q).noise_rel
    moved = abs(current - previous) / max(previous, 1e-9)
    if moved < stable_rel:
        return 0, f"noise {current:.3g} settled (moved {moved:.0%} < {stable_rel:.0%}) after {n} windows"
    return 1, f"noise {current:.3g} still moving ({moved:.0%} >= {stable_rel:.0%}) after {n} windows"


class AdaptiveNoise:
    """Feed A/A windows one at a time; ``need_more()`` says whether to measure another.

    ``can_afford`` (optional) answers whether the budget allows one more window, e.g.
    ``lambda: ledger.exhausted_by(next_load_s=window_s, next_iteration=False) is None``.
    """

    def __init__(
        self, *, q: float = Q, target_rel: float = TARGET_REL, stable_rel: float = STABLE_REL,
        min_windows: int = MIN_WINDOWS, max_windows: int = MAX_WINDOWS,
        can_afford: Callable[[], bool] | None = None,
    ) -> None:
        if not 2 <= min_windows <= max_windows:
            raise InputError(f"A/A windows need 2 <= min_windows <= max_windows, got {min_windows}, {max_windows}")
        self.q, self.target_rel, self.stable_rel = q, target_rel, stable_rel
        self.min_windows, self.max_windows = min_windows, max_windows
        self.can_afford = can_afford
        self.windows: list[pl.DataFrame] = []
        self.reason = "no window yet"

    def add(self, samples: pl.DataFrame) -> None:
        self.windows.append(samples)

    def need_more(self) -> bool:
        need, self.reason = _decide(self.windows, self.q, self.target_rel, self.stable_rel,
                                    self.min_windows, self.max_windows)
        if need and self.can_afford is not None and not self.can_afford():
            self.reason = f"{self.reason}; but the budget has no room for another window"
            return False
        return bool(need)

    def estimate(self) -> NoiseEstimate:
        return estimate_noise(self.windows, self.q)
