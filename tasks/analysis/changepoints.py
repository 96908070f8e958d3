"""Change points in a signature series, with a false-alarm rate measured on A/A windows.

A series is one metric of one endpoint over a target's runs (one load shape), oldest first:
the log of each run's signature value. Binary segmentation with the l2 cost (ruptures
``Binseg``) splits it where the mean of the log shifts; a split is made when its gain (the
drop in the sum of squares, (t (n-t) / n) x (mean before - mean after)^2) exceeds a threshold.

The threshold comes from the store's own A/A windows, not from a formula: null series of the
same length are built by resampling them. A null run's value is a between-run shift plus the
mean of ``k`` window deviations (each A/A window's log value minus its run's mean; k the
windows a signature summarises). The between-run shifts are the differences between
consecutive A/A runs' levels over sqrt(2), either sign: a real step in the history adds one
large difference, not a second mode. With fewer than MIN_AA_RUNS runs of A/A windows they are
normal with sd ``tau``: the part of the series' own robust run-to-run spread (the MAD of its
differences) that the windows do not explain. The threshold is the (1 - FA_TARGET) quantile
of the null series' largest split gain. A change point's ``false_alarm_rate`` is the share of those null series whose
largest gain reaches its own: how often noise alone makes a step that strong.

A change point is a regression when the metric moved the wrong way by more than MIN_STEP;
its size is the after/before ratio of geometric means with a percentile-bootstrap interval
(runs resampled within each segment). It is ``confirmed`` when at least CONFIRM_RUNS runs
after it carry it (a fresh measurement after the one that raised the suspicion) and the
interval lies wholly on the wrong side of 1, ``suspected`` otherwise; it is ``open`` while
the latest segment is still beyond MIN_STEP of the level before it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import ruptures as rpt

WORSE_UP = {"p50_ms": True, "gmean_ms": True, "p95_ms": True, "p99_ms": True, "rps": False}  # is a rise a regression?
FA_TARGET = 0.01  # the threshold lets noise through in this share of step-free series
N_NULL = 2000
N_BOOT = 2000
MIN_STEP = 0.03  # smaller shifts are not reported, however significant
MIN_RUNS = 4  # a shorter series is not judged
MIN_AA_DEVIATIONS = 4  # A/A window deviations needed to build the null
MIN_AA_RUNS = 3  # runs of A/A windows needed to draw between-run shifts from them
CONFIRM_RUNS = 2
MAD_SCALE = 1.4826  # MAD -> sd under normality


@dataclass(frozen=True)
class Null:
    """What a step-free series of this metric looks like: A/A window deviations (log), the
    windows per signature, and the between-run sd."""

    deviations: np.ndarray
    k: int
    tau: float
    shifts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # between-run shifts (log), both signs

    def series(self, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` null log series of length ``n``."""
        draws = self.deviations[rng.integers(0, self.deviations.size, size=(count, n, self.k))].mean(axis=-1)
        if self.shifts.size:
            return draws + self.shifts[rng.integers(0, self.shifts.size, size=(count, n))]
        return draws + (rng.normal(0.0, self.tau, size=(count, n)) if self.tau > 0 else 0.0)


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first run after the shift
    before: float  # geometric means of the segments around it (natural units)
    after: float
    ratio: float
    ci95: tuple[float, float]
    gain: float
    false_alarm_rate: float
    runs_after: int
    regression: bool
    confirmed: bool
    open: bool


def aa_deviations(windows_by_run: Sequence[Sequence[float]]) -> np.ndarray:
    """Log deviations of A/A window values from their run's mean, rescaled by sqrt(m / (m-1))
    (a deviation from a mean of m windows is that much narrower than a window's own noise)."""
    out = []
    for values in windows_by_run:
        logs = np.log(np.asarray([v for v in values if v is not None and v > 0], dtype=np.float64))
        if logs.size >= 2:
            out.append((logs - logs.mean()) * math.sqrt(logs.size / (logs.size - 1)))
    return np.concatenate(out) if out else np.zeros(0)


def aa_shifts(windows_by_run: Sequence[Sequence[float]]) -> np.ndarray:
    """Between-run shifts from A/A runs in time order: consecutive levels' differences / sqrt(2),
    both signs (empty with fewer than MIN_AA_RUNS runs)."""
    levels = [float(np.mean(np.log([v for v in values if v is not None and v > 0])))
              for values in windows_by_run if any(v is not None and v > 0 for v in values)]
    if len(levels) < MIN_AA_RUNS:
        return np.zeros(0)
    d = np.diff(np.asarray(levels)) / math.sqrt(2)
    return np.concatenate([d, -d])


def build_null(log_series: np.ndarray, deviations: np.ndarray, k: int, shifts: np.ndarray | None = None) -> Null | None:
    """The null of a series, or None with too few A/A deviations."""
    if deviations.size < MIN_AA_DEVIATIONS:
        return None
    k = max(1, k)
    if shifts is not None and shifts.size:
        return Null(deviations, k, 0.0, shifts)
    diffs = np.diff(log_series)
    robust_var = (MAD_SCALE * float(np.median(np.abs(diffs - np.median(diffs))))) ** 2 / 2 if diffs.size else 0.0
    tau = math.sqrt(max(0.0, robust_var - float(np.var(deviations)) / k))
    return Null(deviations, k, tau)


def split_gains(series: np.ndarray) -> np.ndarray:
    """The l2 gain of every single split of each row of ``series`` (..., n) -> (..., n-1)."""
    n = series.shape[-1]
    c = np.cumsum(series, axis=-1)
    t = np.arange(1, n)
    left = c[..., :-1] / t
    right = (c[..., -1:] - c[..., :-1]) / (n - t)
    return t * (n - t) / n * (left - right) ** 2


def null_max_gains(null: Null, n: int, *, count: int = N_NULL, seed: int = 0) -> np.ndarray:
    return split_gains(null.series(n, count, np.random.default_rng(seed))).max(axis=-1)


def detect(values: Sequence[float], null: Null, *, worse_up: bool = True, seed: int = 0,
           null_max: np.ndarray | None = None) -> list[ChangePoint]:
    """The change points of a series of positive values (oldest first), judged against ``null``
    (``null_max``: its null series' largest gains for this length, when already drawn)."""
    x = np.log(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < MIN_RUNS:
        return []
    if null_max is None:
        null_max = null_max_gains(null, n, seed=seed)
    threshold = float(np.quantile(null_max, 1 - FA_TARGET))
    ends = rpt.Binseg(model="l2", min_size=1, jump=1).fit(x.reshape(-1, 1)).predict(pen=threshold)
    cuts = [0, *ends]
    rng = np.random.default_rng(seed + 1)
    out = []
    for i in range(1, len(cuts) - 1):
        a, cp, b = cuts[i - 1], cuts[i], cuts[i + 1]
        before, after = x[a:cp], x[cp:b]
        shift = float(after.mean() - before.mean())
        gain = (cp - a) * (b - cp) / (b - a) * shift ** 2
        lo, hi = _boot_ratio(before, after, rng)
        wrong = shift if worse_up else -shift
        regression = wrong > math.log1p(MIN_STEP)
        beyond = lo > 1.0 if worse_up else hi < 1.0
        latest = float(x[cuts[-2]:].mean() - before.mean())
        out.append(ChangePoint(
            index=cp, before=math.exp(before.mean()), after=math.exp(after.mean()), ratio=math.exp(shift),
            ci95=(lo, hi), gain=gain, false_alarm_rate=float(np.mean(null_max >= gain)), runs_after=b - cp,
            regression=regression, confirmed=regression and b - cp >= CONFIRM_RUNS and beyond,
            open=regression and (latest if worse_up else -latest) > math.log1p(MIN_STEP)))
    return out


def _boot_ratio(before: np.ndarray, after: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    b = before[rng.integers(0, before.size, size=(N_BOOT, before.size))].mean(axis=1)
    a = after[rng.integers(0, after.size, size=(N_BOOT, after.size))].mean(axis=1)
    lo, hi = np.quantile(np.exp(a - b), [0.025, 0.975])
    return float(lo), float(hi)


def t_test_detect(values: Sequence[float], *, alpha: float = 0.05, min_size: int = 2) -> int | None:
    """The plain detector benchmarks compare against: Welch's t-test of before vs after at every
    split (``min_size`` runs a side, no correction for the many splits); the split with the
    smallest p-value below ``alpha``, or None. All splits at once (scipy's ttest_ind per split
    was 90% of the changepoints benchmark's time)."""
    from scipy import stats as sps

    x = np.log(np.asarray(values, dtype=np.float64))
    cps = np.arange(min_size, x.size - min_size + 1)
    if cps.size == 0:
        return None
    sides = [(x[:cp], x[cp:]) for cp in cps]
    m1, m2 = np.array([a.mean() for a, _ in sides]), np.array([b.mean() for _, b in sides])
    v1 = np.array([a.var(ddof=1) for a, _ in sides]) / cps
    v2 = np.array([b.var(ddof=1) for _, b in sides]) / (x.size - cps)
    with np.errstate(divide="ignore", invalid="ignore"):  # identical values on both sides: no test
        t = (m1 - m2) / np.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1 ** 2 / (cps - 1) + v2 ** 2 / (x.size - cps - 1))
        p = 2 * sps.t.sf(np.abs(t), df)
    flat = (v1 + v2) == 0  # no spread on either side: any difference is certain, none is no test
    p[flat] = np.where(m1[flat] != m2[flat], 0.0, np.inf)
    p[~np.isfinite(p)] = np.inf
    best = int(np.argmin(p))
    return int(cps[best]) if p[best] < alpha else None
