"""The noise floor, measured adaptively: as many A/A windows as the observed variance needs.

A/A windows are agent-free windows of one unchanged configuration. The floor is how far the
p95 of one window may differ from another's by noise alone (95 %): exp(z * sqrt(2) * sigma) - 1,
where sigma^2 = tau^2 + s^2 is one window's variance of log p95, split as in the decisions'
hierarchical bootstrap (tasks/decisions/effect.py):

- s^2, within a window (sampling): the mean of the windows' bootstrap variances of log p95.
  More windows cannot shrink it; only longer windows can. p95 is the total's at the A/A
  windows' pooled request mix, each endpoint's count held in the resamples
  (``tasks.analysis.mix``), as decisions take it: the endpoints a window happened to draw are
  not noise.
- tau^2, between windows (the machine: other processes, drift): the windows' variance of log
  p95 minus sampling (the method of moments, DerSimonian and Laird's with equal weights; from
  2 windows, half their squared difference). When the windows disagree beyond sampling
  (Cochran's Q below), one of them may be an outlier, and the spread is then estimated
  robustly so that one slow window cannot set it: Rousseeuw and Croux's Qn (a low order
  statistic of the pairwise differences, with its small-sample factors). Qn is not used on
  windows that agree: from 3 windows it is 2.2 times their smallest gap alone, and on the
  shop's A/A windows of 125, 140 and 131 ms (Cochran's p = 0.20) it made the floor 0.35,
  where the variance makes it 0.17. A window disturbed by outside load never gets here: the
  gate rejects it (tasks/analysis/gate.py ``machine_quiet``).

Decisions do not add this floor to their intervals (their bootstrap carries both variances);
it is reported as ``noise_floor.p95_rel``, bounds ``drift`` in history, and says how noisy the
machine was. Throughput has its own floor (``estimate_rps_noise``), built the same way from the
windows' mean requests per second. Whether the p95s differ by more than sampling explains is
Cochran's Q test on log p95 (each window's standard error from the bootstrap).
Another window is asked for only while the estimate is above ``target_rel``, the windows
disagree beyond sampling (p < ALPHA) or are two whose between-window part outweighs sampling,
and the estimate still moved by ``stable_rel`` or more (relative) with the last window; never
below ``min_windows``, never beyond ``max_windows`` nor the budget (``can_afford``). A quiet
machine stops at two windows, a noisy one measures until the estimate settles: the number of
windows is never fixed in advance.

Two windows that agree are not always enough: their between-window part is half one squared
difference, an estimate with one degree of freedom, and Cochran's Q has little power to tell
two windows apart. When that part is the larger (tau > s) the floor rests mostly on it, so a
third window is measured. In a simulation of the estimator (sampling sd 0.044 in log p95, as
the shop's noisier quick-win runs had, no between-window variance: a true floor of 0.13) this
rule reports a floor over 1.5 times the truth in 6.5 % of runs against 13 % when two agreeing
windows always stop, for 0.13 more windows per run on average (tests/tasks/analysis/test_noise.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import stats as sps

from tasks.analysis.compare import bootstrap_means, per_second_rates
from tasks.analysis.mix import endpoint_mix, quantile_draws
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


def _log_quantiles(windows: Sequence[pl.DataFrame], q: float, seed: int) -> tuple[list[float], list[float]]:
    """Each window's log quantile q at the windows' pooled request mix, and its bootstrap variance."""
    rng = np.random.default_rng(seed)
    mix = endpoint_mix(windows)
    logs, within = [], []
    for window in windows:
        found = quantile_draws(window, q, N_BOOT_SE, rng, mix)
        if found is None:
            timed = window.get_column("latency_ms").drop_nulls().len()
            raise InputError(f"an A/A window has {timed} latencies; at least 2 are needed")
        point, draws = found
        logs.append(math.log(max(point, 1e-9)))
        within.append(float(np.var(np.log(np.maximum(draws, 1e-9)), ddof=1)))
    return logs, within


def agreement_p(windows: Sequence[pl.DataFrame], q: float = Q, seed: int = 0) -> float:
    """Cochran's Q p-value that the windows' log quantiles differ only by sampling error."""
    logs, within = _log_quantiles(windows, q, seed)
    return _agreement(logs, within)


def _agreement(logs: Sequence[float], within: Sequence[float]) -> float:
    y, w = np.array(logs), 1.0 / np.maximum(np.array(within), 1e-12)
    mean = float((w * y).sum() / w.sum())
    cochran_q = float((w * (y - mean) ** 2).sum())
    return float(sps.chi2.sf(cochran_q, df=len(logs) - 1))


# Qn's small-sample correction factors d_n (Croux and Rousseeuw 1992), n = 2..9; 1 beyond.
QN_FACTORS = {2: 0.399, 3: 0.994, 4: 0.512, 5: 0.844, 6: 0.611, 7: 0.857, 8: 0.669, 9: 0.872}
QN_CONSTANT = 2.2219


def qn_scale(values: Sequence[float] | np.ndarray) -> float:
    """Rousseeuw and Croux's Qn: a scale estimate that one outlying value cannot inflate."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 2:
        return 0.0
    diffs = np.sort([abs(a - b) for a, b in itertools.combinations(x, 2)])
    h = n // 2 + 1
    k = h * (h - 1) // 2
    return float(QN_FACTORS.get(n, n / (n + 1.4) if n % 2 else n / (n + 3.8)) * QN_CONSTANT * diffs[k - 1])


def log_spread(values: Sequence[float], within_var: float, *, robust: bool = True) -> tuple[float, float]:
    """(tau, sigma): the between-window sd of a log statistic beyond sampling, and one window's sd.

    ``robust`` (for windows that disagree beyond sampling): the windows' spread from Qn, which
    one outlying window cannot inflate; else their standard deviation."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return 0.0, math.sqrt(within_var)
    total_sd = qn_scale(x) if robust and x.size >= MIN_BETWEEN_WINDOWS else float(np.std(x, ddof=1))
    tau2 = max(0.0, total_sd ** 2 - within_var)
    return math.sqrt(tau2), math.sqrt(tau2 + within_var)


def _floor(sd: float) -> float:
    return math.exp(Z95 * math.sqrt(2.0) * sd) - 1.0


def estimate_noise(windows: Sequence[pl.DataFrame], q: float = Q) -> NoiseEstimate:
    """The noise floor from two or more A/A windows' samples (see the module docstring)."""
    if len(windows) < 2:
        raise InputError(f"a noise floor needs at least 2 A/A windows, got {len(windows)}")
    logs, within = _log_quantiles(windows, q, seed=0)
    s2 = float(np.mean(within))
    agree_p = _agreement(logs, within)
    tau, sigma = log_spread(logs, s2, robust=agree_p < ALPHA)
    pairwise = [round(abs(math.exp(a - b) - 1.0), 4) for a, b in itertools.combinations(logs, 2)]
    p95s = [math.exp(v) for v in logs]
    return NoiseEstimate(round(_floor(sigma), 4), len(windows), pairwise, round(_floor(math.sqrt(s2)), 4),
                         round(_floor(tau), 4), [round(p, 3) for p in p95s], round(agree_p, 4))


def estimate_rps_noise(windows: Sequence[pl.DataFrame]) -> float:
    """The relative rps shift noise alone can cause between two windows (the p95 floor's method,
    on the log of each window's mean requests per second)."""
    if len(windows) < 2:
        raise InputError(f"a noise floor needs at least 2 A/A windows, got {len(windows)}")
    rng = np.random.default_rng(0)
    logs, within = [], []
    for w in windows:
        rates = per_second_rates(w)
        if rates.size < 2 or rates.mean() <= 0:
            raise InputError("an A/A window has too few seconds of requests for a throughput floor")
        logs.append(math.log(float(rates.mean())))
        within.append(float(np.var(np.log(np.maximum(bootstrap_means(rates, N_BOOT_SE, rng), 1e-9)), ddof=1)))
    _, sigma = log_spread(logs, float(np.mean(within)), robust=_agreement(logs, within) < ALPHA)
    return round(_floor(sigma), 4)


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
    one_pair_sized = n < MIN_BETWEEN_WINDOWS and (estimate.between_rel or 0.0) > estimate.within_rel
    if estimate.agree_p >= ALPHA and not one_pair_sized:
        return 0, f"noise {current:.3g}: {n} windows agree within sampling error (p={estimate.agree_p:.2g})"
    if estimate.agree_p >= ALPHA:
        return 1, (f"noise {current:.3g}: 2 windows agree, but their between-window part "
                   f"({estimate.between_rel:.3g}) outweighs sampling ({estimate.within_rel:.3g}): one more to size it")
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
        self.can_afford: Callable[[], bool] = can_afford or (lambda: True)
        self.windows: list[pl.DataFrame] = []
        self.reason = "no window yet"

    def add(self, samples: pl.DataFrame) -> None:
        self.windows.append(samples)

    def need_more(self) -> bool:
        need, self.reason = _decide(self.windows, self.q, self.target_rel, self.stable_rel,
                                    self.min_windows, self.max_windows)
        if need and not self.can_afford():
            self.reason = f"{self.reason}; but the budget has no room for another window"
            return False
        return bool(need)

    def estimate(self) -> NoiseEstimate:
        return estimate_noise(self.windows, self.q)
