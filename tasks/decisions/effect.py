"""The effect of a change from several windows per arm: a hierarchical bootstrap.

A window's statistic is the log of a quantile of its request latencies (or the log of its
mean requests per second). An arm's statistic is the mean over its windows, so the ratio of
two arms is a ratio of geometric means. Its interval carries both sources of noise:

- between windows (the machine: other processes, drift, a slow disk second): the windows'
  deviations from their arm's mean, pooled over both arms, give the between-window sd tau;
  each replicate shifts an arm by the mean of n level shifts of sd tau (drawn normally: two
  or three residuals resampled would give tails far too light);
- within a window (sampling): each drawn window's statistic is redrawn from its own
  bootstrap distribution (requests resampled; quantiles drawn exactly from order
  statistics, ``tasks.analysis.compare.bootstrap_quantiles``). The total's percentiles are
  taken at one request mix shared by the compared windows, each endpoint's count held in the
  resamples (``tasks.analysis.mix``): which endpoints a window happened to draw is not noise
  a decision has to carry.

A window's observed deviation already contains its own sampling error, so the between-window
spread is split (tau^2 = max(0, var(deviations) - mean within variance), the random-effects
split of DerSimonian and Laird): drawing both levels then reproduces the observed spread
instead of counting sampling twice. With a single
window per arm the deviations say nothing of tau; ``prior_tau`` (from the state's A/A windows)
stands in.

A handful of windows estimates tau poorly, and a bootstrap takes its estimate as the truth. So
the observed between-window spread is widened by t(df) / z at the decision's one-sided level
(df: the windows' degrees of freedom) before sampling is taken out of it: the Student
correction a t-test would make, so that a spread that happens to look small in a few windows
still widens the interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats as sps

from tasks.analysis.compare import bootstrap_means, per_second_rates
from tasks.analysis.mix import endpoint_mix, quantile_draws
from tasks.analysis.stats import PERCENTILES
from tasks.errors import PerfagentsError

N_BOOT = 2000
CONF = 0.95
T_ALPHA = 0.02  # the one-sided level of the t correction (the rule's per-look level)
MIN_WINDOW_SAMPLES = 20  # a window with fewer requests of the judged endpoint is left out of the arm


@dataclass(frozen=True)
class WindowStat:
    """One window's log statistic and draws of its sampling distribution (same log scale)."""

    value: float  # log of the point statistic
    draws: np.ndarray  # N_BOOT bootstrap draws of the log statistic
    natural: float  # the statistic itself (ms or requests per second)

    @property
    def within_var(self) -> float:
        return float(np.var(self.draws, ddof=1))


def window_stat(samples: pl.DataFrame, metric: str, *, endpoint: str | None = None,
                n_boot: int = N_BOOT, rng: np.random.Generator | None = None,
                mix: Mapping[str, float] | None = None) -> WindowStat | None:
    """The log statistic of one window (None when it has too few samples of ``endpoint``).

    The total's percentiles are taken at the reference request mix ``mix``
    (``tasks.analysis.mix``): the windows of one comparison share it.
    """
    rng = rng or np.random.default_rng(0)
    frame = samples if endpoint is None else samples.filter(pl.col("endpoint") == endpoint)
    if metric == "rps":
        rates = per_second_rates(frame)
        if rates.size < 2 or float(rates.mean()) <= 0:
            return None
        draws = bootstrap_means(rates, n_boot, rng)
        natural = float(rates.mean())
    elif metric in PERCENTILES:
        timed = frame.get_column("latency_ms").drop_nulls().to_numpy().astype(np.float64)
        if int(np.isfinite(timed).sum()) < MIN_WINDOW_SAMPLES:
            return None
        found = quantile_draws(frame, PERCENTILES[metric], n_boot, rng, mix if endpoint is None else None)
        if found is None:
            return None
        natural, draws = found
    else:
        raise PerfagentsError(f"cannot judge windows on {metric!r} (use p50_ms, p95_ms, p99_ms or rps)")
    if natural <= 0:
        return None
    return WindowStat(math.log(natural), np.log(np.maximum(draws, 1e-9)), natural)


def comparison_mix(windows: Sequence[pl.DataFrame], metric: str,
                   endpoint: str | None = None) -> dict[str, float] | None:
    """The request mix the windows' statistic is taken at: the pooled mix of ``windows`` for the
    total's percentiles; None where no mix applies (throughput, one endpoint's own)."""
    return endpoint_mix(windows) if endpoint is None and metric in PERCENTILES else None


def window_stats(windows: Sequence[pl.DataFrame], metric: str, *, endpoint: str | None = None,
                 seed: int = 0, mix: Mapping[str, float] | None = None) -> list[WindowStat]:
    """Each window's statistic; the total's percentiles at ``mix`` (default: these windows' own
    pooled mix; a comparison passes the mix of both arms' windows, ``comparison_mix``)."""
    rng = np.random.default_rng(seed)
    if mix is None:
        mix = comparison_mix(windows, metric, endpoint)
    out = [window_stat(w, metric, endpoint=endpoint, rng=rng, mix=mix) for w in windows]
    return [s for s in out if s is not None]


def between_tau(arms: Sequence[Sequence[WindowStat]], widen: float = 1.0) -> tuple[float | None, int]:
    """(tau, degrees of freedom): the between-window sd of the log statistic beyond sampling.

    From the windows' deviations from their own arm's mean, pooled over arms; None when no arm
    has two windows. ``widen`` multiplies the observed spread before sampling is taken out of it
    (the t correction: a small observed spread from few windows must still be widened).
    """
    ss, df, within = 0.0, 0, []
    for arm in arms:
        if len(arm) < 2:
            continue
        values = np.array([w.value for w in arm])
        ss += float(((values - values.mean()) ** 2).sum())
        df += len(arm) - 1
        within += [w.within_var for w in arm]
    if df == 0:
        return None, 0
    return math.sqrt(max(0.0, widen ** 2 * ss / df - float(np.mean(within)))), df


@dataclass
class ArmEffect:
    """after/before ratio of the arms' geometric-mean statistic, with its bootstrap draws."""

    ratio: float
    ci95: tuple[float, float]
    draws: np.ndarray  # bootstrap draws of the ratio
    before: float  # geometric means, natural units
    after: float
    windows_before: int
    windows_after: int
    tau: float  # the between-window sd (log) used

    def upper(self, conf: float) -> float:
        """The one-sided upper bound at ``conf``."""
        return float(np.quantile(self.draws, conf))

    def lower(self, conf: float) -> float:
        return float(np.quantile(self.draws, 1.0 - conf))

    def p_below(self, limit: float = 1.0) -> float:
        """Bootstrap probability that the ratio is at or above ``limit`` (one-sided p of "below")."""
        return float(np.mean(self.draws >= limit))

    def p_above(self, limit: float = 1.0) -> float:
        return float(np.mean(self.draws <= limit))


def t_factor(df: int, alpha: float = T_ALPHA) -> float:
    """t(df) / z at one-sided ``alpha``: how much wider few windows make the between-window part."""
    return float(sps.t.ppf(1 - alpha, max(df, 1)) / sps.norm.ppf(1 - alpha))


def arm_effect(before: Sequence[WindowStat], after: Sequence[WindowStat], *, prior_tau: float = 0.0,
               prior_df: int = 1, n_boot: int = N_BOOT, seed: int = 0) -> ArmEffect:
    """The hierarchical-bootstrap ratio after/before (see the module docstring)."""
    if not before or not after:
        raise PerfagentsError(f"an effect needs windows on both sides, got {len(before)} before and {len(after)} after")
    rng = np.random.default_rng(seed)
    tau, df = between_tau([before, after])
    if tau is None:
        tau = prior_tau * t_factor(prior_df)
    else:
        tau = between_tau([before, after], widen=t_factor(df))[0] or 0.0
    boot = _arm_draws(after, tau, n_boot, rng) - _arm_draws(before, tau, n_boot, rng)
    ratios = np.exp(boot)
    m_before = float(np.mean([w.value for w in before]))
    m_after = float(np.mean([w.value for w in after]))
    lo, hi = np.quantile(ratios, [(1 - CONF) / 2, (1 + CONF) / 2])
    return ArmEffect(math.exp(m_after - m_before), (float(lo), float(hi)), ratios, math.exp(m_before),
                     math.exp(m_after), len(before), len(after), tau)


def _arm_draws(arm: Sequence[WindowStat], tau: float, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """n_boot draws of the arm's mean log statistic: windows drawn, then each window's sampling."""
    n = len(arm)
    centre = float(np.mean([w.value for w in arm]))
    pick = rng.integers(0, n, size=(n_boot, n))  # which window's sampling distribution
    within = np.stack([w.draws - w.value for w in arm])  # (n, N_BOOT) centred draws
    cols = rng.integers(0, within.shape[1], size=(n_boot, n))
    total = within[pick, cols].mean(axis=1)
    if tau > 0:  # the between-window part: n windows' level shifts of sd tau
        total = total + rng.normal(0.0, tau / math.sqrt(n), size=n_boot)
    return centre + total


def arm_level(arm: Sequence[WindowStat], *, prior_tau: float = 0.0, n_boot: int = N_BOOT,
              seed: int = 0) -> tuple[float, np.ndarray]:
    """(geometric mean, its bootstrap draws) of one arm's statistic, in natural units."""
    if not arm:
        raise PerfagentsError("an arm needs at least one window")
    tau, df = between_tau([arm])
    tau = prior_tau * t_factor(1) if tau is None else between_tau([arm], widen=t_factor(df))[0] or 0.0
    draws = _arm_draws(arm, tau, n_boot, np.random.default_rng(seed))
    return math.exp(float(np.mean([w.value for w in arm]))), np.exp(draws)
