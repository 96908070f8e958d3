"""How far each kind of estimate came true: estimated gains calibrated on measured ones.

A candidate's ``expected_gain`` g promises that the metric it aims at falls to (1 - g) of its
value: an estimated log-ratio x = ln(1 - g). Its decision measured a log-ratio y = ln(ratio)
(for a change judged on throughput, -ln(ratio)). The realised share rho = y / x says how much
of the promised log-gain came true: 1 as estimated, 0.5 half of it, 0 nothing, below 0 slower.

Per kind of estimate (the change's kind and the finding it rests on: ``create_index/missing_index``,
``set_knob/cpu_saturation``, ``set_knob/no_finding`` ...) the mean realised share mu is estimated
by normal-normal shrinkage. The prior is N(1, PRIOR_SD^2): a kind with no history is trusted as
estimated. Each observation weighs 1 / (v_i + omega^2): v_i is its measurement variance (the
decision's 95% interval as a standard error, divided by x^2), omega the spread of rho between
changes of one kind (pooled over kinds, robustly; at least OMEGA_MIN). The posterior mean is the
prior and the observations averaged by those weights; its sd (1 / sqrt of the summed weights)
shrinks as observations come in. A candidate's calibrated gain is 1 - (1 - g)^mu: a kind whose
estimates came true by half promises 1 - sqrt(1 - g); one that made things slower, a negative
gain, so it ranks after every kind that delivered.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

PRIOR_MEAN = 1.0  # no history: the estimate as it is
PRIOR_SD = 0.5
OMEGA_MIN = 0.1  # the realised share of two changes of one kind differs at least this much
OMEGA_DEFAULT = 0.3  # until the history has residuals to measure the spread on
MIN_ESTIMATE = 0.02  # an estimated gain below this says nothing about a ratio (x ~ 0): not used
MAX_ESTIMATE = 0.999  # a what-if of 1000x and more is read as 1000x
Z95 = 1.959964
NO_FINDING = "no_finding"


def learning_kind(change_kind: str, basis: str | None) -> str:
    """The kind an estimate is calibrated with: the change's kind and the finding it rests on."""
    return f"{change_kind}/{basis or NO_FINDING}"


class Estimated(Protocol):
    """What a calibration reads of a candidate (tasks.findings.Candidate)."""

    @property
    def kind(self) -> str: ...
    @property
    def basis(self) -> str: ...
    @property
    def expected_gain(self) -> float: ...


@dataclass(frozen=True)
class Observation:
    """One tried change: its kind, estimated gain and measured log-ratio (negative = faster)."""

    kind: str
    run_id: str
    estimated_gain: float
    log_ratio: float
    se: float  # standard error of log_ratio, from the decision's 95% interval

    @property
    def x(self) -> float:
        return math.log1p(-min(self.estimated_gain, MAX_ESTIMATE))

    @property
    def share(self) -> float:
        return self.log_ratio / self.x

    @property
    def variance(self) -> float:
        return (self.se / self.x) ** 2


def observation(kind: str, run_id: str, expected_gain: float | None, metric: str | None, ratio: float | None,
                lo: float | None, hi: float | None) -> Observation | None:
    """An observation from an estimate and its decision's effect; None when either says too little
    (no interval, no ratio, or an estimate too small to calibrate)."""
    if expected_gain is None or expected_gain < MIN_ESTIMATE or not ratio or not lo or not hi:
        return None
    if ratio <= 0 or lo <= 0 or hi < lo:
        return None
    sign = -1.0 if metric == "rps" else 1.0  # throughput: higher is better
    se = max((math.log(hi) - math.log(lo)) / (2 * Z95), 1e-3)
    return Observation(kind, run_id, float(expected_gain), sign * math.log(ratio), se)


@dataclass(frozen=True)
class KindFit:
    """The posterior of one kind's mean realised share."""

    kind: str
    n: int
    mean: float
    sd: float
    observed: float | None  # the plain mean of the observations' shares (None without any)

    def gain(self, expected_gain: float, share: float | None = None) -> float:
        g = min(max(expected_gain, 0.0), MAX_ESTIMATE)
        return 1.0 - math.pow(1.0 - g, self.mean if share is None else share)

    def interval(self, expected_gain: float) -> tuple[float, float]:
        """The calibrated gain's 95% interval (from the share's)."""
        a, b = self.gain(expected_gain, self.mean - Z95 * self.sd), self.gain(expected_gain, self.mean + Z95 * self.sd)
        return (min(a, b), max(a, b))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "share": round(self.mean, 4), "sd": round(self.sd, 4),
                "share_ci95": [round(self.mean - Z95 * self.sd, 4), round(self.mean + Z95 * self.sd, 4)],
                "observed_share": None if self.observed is None else round(self.observed, 4)}


@dataclass(frozen=True)
class Calibration:
    """Per kind, how far estimates came true; kinds without history keep their estimates."""

    kinds: dict[str, KindFit] = field(default_factory=dict)
    omega: float = OMEGA_DEFAULT
    observations: int = 0

    def fit_for(self, candidate: Estimated) -> KindFit | None:
        return self.kinds.get(learning_kind(candidate.kind, candidate.basis))

    def calibrated_gain(self, candidate: Estimated) -> float:
        fit = self.fit_for(candidate)
        return candidate.expected_gain if fit is None else fit.gain(candidate.expected_gain)


def between_spread(groups: dict[str, list[Observation]]) -> float:
    """omega: the spread of realised shares between changes of one kind, pooled over kinds.

    1.4826 x the median absolute deviation of the shares from their kind's median (robust to a
    wild share, as a small estimate's can be), less the median measurement variance; at least
    OMEGA_MIN, OMEGA_DEFAULT until two kinds' residuals (or three of one) exist.
    """
    residuals: list[float] = []
    variances: list[float] = []
    for obs in groups.values():
        if len(obs) < 2:
            continue
        shares = np.array([o.share for o in obs])
        residuals.extend(shares - np.median(shares))
        variances.extend(o.variance for o in obs)
    if len(residuals) < 3:
        return OMEGA_DEFAULT
    mad = 1.4826 * float(np.median(np.abs(residuals)))
    return max(OMEGA_MIN, math.sqrt(max(mad**2 - float(np.median(variances)), 0.0)))


def fit_calibration(observations: Iterable[Observation]) -> Calibration:
    """The per-kind posteriors of the mean realised share (empty history: an empty calibration)."""
    groups: dict[str, list[Observation]] = defaultdict(list)
    for o in observations:
        groups[o.kind].append(o)
    omega = between_spread(groups)
    kinds = {}
    for kind, obs in groups.items():
        weights = np.array([1.0 / (o.variance + omega**2) for o in obs])
        shares = np.array([o.share for o in obs])
        precision = 1.0 / PRIOR_SD**2 + float(weights.sum())
        mean = (PRIOR_MEAN / PRIOR_SD**2 + float((weights * shares).sum())) / precision
        kinds[kind] = KindFit(kind, len(obs), mean, 1.0 / math.sqrt(precision), float(shares.mean()))
    return Calibration(kinds, omega, sum(len(v) for v in groups.values()))
