"""Percentiles of the whole load at a fixed request mix: post-stratification by endpoint.

A window's total p95 is a quantile of a mixture of endpoints. Locust draws each user's next
task at random, so the share of each endpoint varies from window to window by chance. When the
endpoints' latencies differ a lot, that chance moves the total's tail by itself: on the
reference shop 7 % of requests are ``customer_orders`` scans of 130-300 ms and the rest take
a few ms, so p95 falls inside the scans' distribution, and one window that drew 8 % of them
instead of 6 % has a p95 tens of ms higher with nothing changed. Measured on its A/A windows
(10 users, 20 s, ~1,100 requests): the bootstrap standard error of log p95 was 0.060-0.085
with requests resampled freely and 0.024-0.054 with each endpoint's count held.

So statistics that compare windows (decisions, the noise floor) take the total's quantile at
one reference mix: each endpoint weighted by its share of all requests in the windows being
compared (``endpoint_mix``), each window's requests weighted so that its endpoints carry those
shares (post-stratification, as controlled experiments use it to remove the variance of a
random assignment; Xie and Aurisset, KDD 2016). A change cannot move the mix of a closed-loop
Locust load (the task weights set it), so this removes noise, not effect. With a single
endpoint nothing changes: the quantile and its bootstrap are the plain ones.

The bootstrap resamples within each endpoint (its count held): a resample is a vector of
multinomial counts per request, so one global sort serves every draw. Quantiles here are the
inverse of the weighted empirical distribution (the smallest value whose cumulative weight
reaches q), which is what the plain quantile becomes when every weight is equal, up to
interpolation between neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from tasks.analysis.compare import bootstrap_quantiles

CELLS = 2_000_000  # resample x request cells per block of the bootstrap (16 MB of float64)
MIN_STRATUM = 2  # an endpoint with fewer requests in a window joins no stratum: too few to weight


def endpoint_mix(windows: Sequence[pl.DataFrame]) -> dict[str, float]:
    """Each endpoint's share of the timed requests of all ``windows`` together."""
    counts: dict[str, int] = {}
    for frame in windows:
        if frame.height == 0 or "endpoint" not in frame.columns:
            continue
        rows = (frame.filter(pl.col("latency_ms").is_not_null())
                .group_by("endpoint").len().iter_rows())
        for name, n in rows:
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    total = sum(counts.values())
    return {name: n / total for name, n in sorted(counts.items())} if total else {}


def _strata(frame: pl.DataFrame, mix: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
    """(sorted values, their weights, each stratum's positions in that order), or None when the
    window has fewer than two endpoints to weight (then the plain quantile applies)."""
    values = frame.get_column("latency_ms").to_numpy().astype(np.float64)
    names = frame.get_column("endpoint").to_numpy()
    keep = np.isfinite(values)
    values, names = values[keep], names[keep]
    present = [n for n in mix if mix[n] > 0 and int((names == n).sum()) >= MIN_STRATUM]
    if len(present) < 2:
        return None
    order = np.argsort(values, kind="stable")
    values, names = values[order], names[order]
    share = sum(mix[n] for n in present)
    weights = np.zeros(values.size)
    groups = []
    for n in present:
        where = np.flatnonzero(names == n)
        weights[where] = mix[n] / share / where.size
        groups.append(where)
    return values, weights, groups


def _inverse(values: np.ndarray, cumulative: np.ndarray, q: float) -> np.ndarray:
    """The smallest value whose cumulative weight reaches q, per row of ``cumulative``."""
    reached = cumulative >= q - 1e-12
    return values[np.argmax(reached, axis=-1)]


def quantile_draws(frame: pl.DataFrame, q: float, n_boot: int, rng: np.random.Generator,
                   mix: Mapping[str, float] | None = None) -> tuple[float, np.ndarray] | None:
    """(the window's quantile q of latency, n_boot bootstrap draws of it) at the reference mix.

    Without ``mix`` (or with fewer than two endpoints to weight) these are the plain quantile
    and its exact order-statistic bootstrap (``tasks.analysis.compare.bootstrap_quantiles``).
    None when the window has fewer than two timed requests.
    """
    strata = _strata(frame, mix) if mix else None
    if strata is None:
        values = frame.get_column("latency_ms").drop_nulls().to_numpy().astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size < 2:
            return None
        return float(np.quantile(values, q)), bootstrap_quantiles(values, q, n_boot, rng)
    values, weights, groups = strata
    point = float(_inverse(values, np.cumsum(weights), q))
    draws = np.empty(n_boot)
    block = max(1, CELLS // values.size)  # resamples per block: bounded memory for large windows
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        counts = np.zeros((rows, values.size))
        for where in groups:
            counts[:, where] = rng.multinomial(where.size, np.full(where.size, 1.0 / where.size), size=rows)
        draws[start:start + rows] = _inverse(values, np.cumsum(counts * weights, axis=1), q)
    return point, draws
