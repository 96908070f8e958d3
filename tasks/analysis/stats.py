"""Window statistics: per-endpoint and total latency, throughput and error rate from samples.

A samples frame has one row per request (warm-up already excluded):
``ts`` Float64 (epoch s), ``endpoint`` Utf8 (the Locust name), ``method`` Utf8,
``latency_ms`` Float64, ``status`` Int32 (0 = connection error), ``bytes`` Int64,
``error`` Utf8 (null when the request succeeded).

Percentiles use linear interpolation between order statistics (numpy's default), the same
definition tasks/analysis/compare.py bootstraps, so a reported p95 and its confidence interval agree.
Null latencies are ignored by the percentiles and the mean but still count as requests.

In the store's ``endpoint_stats`` table the all-endpoints row is named ``__total__``
(TOTAL_ENDPOINT) so that it can never clash with a Locust request name; the ``--json``
shape keeps it apart under ``"total"``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from tasks.errors import PerfagentsError

TOTAL_ENDPOINT = "__total__"
PERCENTILES: dict[str, float] = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
MS_DECIMALS = 3
RPS_DECIMALS = 3
RATE_DECIMALS = 6
# Metrics for which a bigger number is better (worst_endpoint picks the smallest).
HIGHER_IS_BETTER = frozenset({"rps", "requests"})
STAT_KEYS = ("requests", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate", "mean_ms")
MIN_LATENCY_MS = 0.001  # latencies are clipped here before their log (the geometric mean)


def _aggregations(duration_s: float) -> list[pl.Expr]:
    latency = pl.col("latency_ms")
    requests = pl.len()
    exprs = [
        requests.alias("requests"),
        (requests / duration_s).round(RPS_DECIMALS).alias("rps"),
        latency.mean().round(MS_DECIMALS).alias("mean_ms"),
        # the geometric mean: the latency statistic least moved by sampling in a window (regressions)
        latency.clip(lower_bound=MIN_LATENCY_MS).log().mean().exp().round(MS_DECIMALS).alias("gmean_ms"),
    ]
    exprs += [
        latency.quantile(q, interpolation="linear").round(MS_DECIMALS).alias(name)
        for name, q in PERCENTILES.items()
    ]
    exprs += [
        (pl.col("error").is_not_null().sum() / requests).round(RATE_DECIMALS).alias("error_rate"),
        pl.col("bytes").mean().round(MS_DECIMALS).alias("bytes_mean"),
    ]
    return exprs


def summarize_window(samples: pl.DataFrame, duration_s: float) -> pl.DataFrame:
    """One row per endpoint (sorted by name) plus a last ``__total__`` row."""
    if duration_s <= 0:
        raise PerfagentsError(f"window duration must be positive, got {duration_s}")
    aggs = _aggregations(duration_s)
    per_endpoint = samples.group_by("endpoint").agg(aggs).sort("endpoint")
    total = samples.select(aggs).with_columns(pl.lit(TOTAL_ENDPOINT).alias("endpoint"))
    if samples.height == 0:
        total = total.with_columns(pl.lit(0.0).alias("rps"), pl.lit(0.0).alias("error_rate"))
    frame = pl.concat([per_endpoint, total.select(per_endpoint.columns)], how="vertical_relaxed")
    return frame.with_columns(pl.col("requests").cast(pl.Int64))


def _stat_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in STAT_KEYS}


def window_stats(samples: pl.DataFrame, duration_s: float) -> dict[str, Any]:
    """The DESIGN.md ``--json`` shape: ``{"endpoints": {name: {...}}, "total": {...}}``.

    Each entry has requests, rps (requests / duration_s), p50_ms, p95_ms, p99_ms,
    error_rate (rows with an error / requests) and mean_ms. Latency numbers are None when
    there is no latency to summarize (an empty window).
    """
    rows = summarize_window(samples, duration_s).to_dicts()
    return {
        "endpoints": {row["endpoint"]: _stat_dict(row) for row in rows[:-1]},
        "total": _stat_dict(rows[-1]),
    }


def endpoint_stats_frame(samples: pl.DataFrame, duration_s: float, window_id: str) -> pl.DataFrame:
    """Rows for the store's ``endpoint_stats`` table; the total row is named ``__total__``."""
    frame = summarize_window(samples, duration_s).with_columns(pl.lit(window_id).alias("window_id"))
    return frame.select(
        "window_id", "endpoint", "requests", "rps", "mean_ms", "p50_ms", "p95_ms", "p99_ms",
        "error_rate", "bytes_mean", "gmean_ms",
    )


def worst_endpoint(stats: dict[str, Any], metric: str = "p95_ms") -> str:
    """The endpoint that does worst on ``metric`` (highest latency or error rate, lowest rps)."""
    values = {
        name: entry[metric]
        for name, entry in stats.get("endpoints", {}).items()
        if entry.get(metric) is not None
    }
    if not values:
        raise PerfagentsError(f"no endpoint has a value for {metric!r}")
    pick = min if metric in HIGHER_IS_BETTER else max
    return pick(values, key=values.__getitem__)
