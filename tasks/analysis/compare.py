"""Before/after comparisons with confidence intervals, the noise floor, and keep-or-revert.

DESIGN principle 1: every accepted change carries its measured effect with a confidence
interval from request-level samples, compared with a noise floor measured on this machine.

The quantile bootstrap does not materialise resamples. In a resample of n values drawn
with replacement from sorted x, the k-th smallest is x[ceil(n*U_(k)) - 1], where U_(k) is
the k-th smallest of n uniforms: U_(k) ~ Beta(k, n-k+1), and the next one is
U_(k) + (1-U_(k))*Beta(1, n-k). Drawing those two order statistics gives exactly the
bootstrap distribution of the linearly interpolated quantile in O(n_boot) after one sort
(tests/tasks/test_compare.py checks it against brute-force resampling).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps

from tasks.analysis.stats import PERCENTILES
from tasks.errors import ExpressionError, PerfagentsError
from tasks.expressions import OPERATORS, Expression

N_BOOT = 2000
CONF = 0.95
ALPHA = 0.05  # decide(): the rank test's p-value must be below this
MIN_ENDPOINT_SAMPLES = 50  # decide_endpoints(): endpoints with fewer requests on a side are not judged
MIN_RATE_BINS = 4  # per_second_rates(): bins of a window shorter than this many seconds
MEAN_BOOT_CHUNK = 100  # resamples per chunk when bootstrapping a mean (bounded memory)
LATENCY_METRICS = frozenset({*PERCENTILES, "mean_ms"})
REQUEST_METRICS = frozenset({*LATENCY_METRICS, "rps", "requests", "error_rate"})
# Checked by their owners (responses==baseline by the response checker; frontend and cost
# metrics by their agents) unless the stats dict carries them.
SKIPPED_METRICS = frozenset({"responses"})


def _clean(values: np.ndarray | Any, side: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size < 2:
        raise PerfagentsError(f"{side} window has {arr.size} usable samples; at least 2 are needed")
    return arr


def _interval(boot: np.ndarray, conf: float) -> tuple[float, float]:
    tail = (1.0 - conf) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_quantiles(
    values: np.ndarray, q: float, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """n_boot draws of the bootstrap distribution of quantile_q(values) (linear interpolation)."""
    x = np.sort(values)
    n = x.size
    h = q * (n - 1)
    lo = int(np.floor(h))
    frac = h - lo
    k = lo + 1  # 1-based rank of the lower order statistic
    u_k = rng.beta(k, n - k + 1, size=n_boot)
    lower = x[np.clip(np.ceil(n * u_k).astype(np.int64) - 1, 0, n - 1)]
    if frac == 0.0 or k >= n:
        return lower
    u_next = u_k + (1.0 - u_k) * rng.beta(1, n - k, size=n_boot)
    upper = x[np.clip(np.ceil(n * u_next).astype(np.int64) - 1, 0, n - 1)]
    return lower + frac * (upper - lower)


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """n_boot bootstrap means, resampled in chunks of MEAN_BOOT_CHUNK."""
    out = np.empty(n_boot)
    for start in range(0, n_boot, MEAN_BOOT_CHUNK):
        size = min(MEAN_BOOT_CHUNK, n_boot - start)
        idx = rng.integers(0, values.size, size=(size, values.size))
        out[start : start + size] = values[idx].mean(axis=1)
    return out


def _ratio(after: float, before: float) -> float:
    if before == 0:
        raise PerfagentsError("the before value is 0, so the ratio is undefined")
    return after / before


def bootstrap_ratio_ci(
    before: np.ndarray, after: np.ndarray, *, q: float = 0.95, n_boot: int = N_BOOT,
    conf: float = CONF, seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, lo, hi): quantile_q(after)/quantile_q(before) with its percentile-bootstrap CI.

    Each side is resampled independently.
    """
    b, a = _clean(before, "before"), _clean(after, "after")
    ratio = _ratio(float(np.quantile(a, q)), float(np.quantile(b, q)))
    rng = np.random.default_rng(seed)
    qb = bootstrap_quantiles(b, q, n_boot, rng)
    qa = bootstrap_quantiles(a, q, n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = _interval(qa / qb, conf)
    return ratio, lo, hi


def bootstrap_mean_ratio_ci(
    before: np.ndarray, after: np.ndarray, *, n_boot: int = N_BOOT, conf: float = CONF,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, lo, hi) of mean(after)/mean(before) with its percentile-bootstrap CI."""
    b, a = _clean(before, "before"), _clean(after, "after")
    ratio = _ratio(float(a.mean()), float(b.mean()))
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = _interval(bootstrap_means(a, n_boot, rng) / bootstrap_means(b, n_boot, rng), conf)
    return ratio, lo, hi


def rank_test(before: np.ndarray, after: np.ndarray, *, alternative: str = "less") -> float:
    """One-sided Mann-Whitney U p-value; the default alternative is "after is smaller"."""
    b, a = _clean(before, "before"), _clean(after, "after")
    return float(sps.mannwhitneyu(a, b, alternative=alternative).pvalue)


def per_second_rates(samples: pl.DataFrame, min_bins: int = MIN_RATE_BINS) -> np.ndarray:
    """Requests per second in each whole second of the window (the partial last second dropped).

    A window shorter than ``min_bins`` seconds is cut into ``min_bins`` equal bins instead, so
    that a 2 s window still gives the throughput's spread something to stand on.
    """
    ts = samples.get_column("ts").drop_nulls().to_numpy()
    if ts.size == 0:
        return np.zeros(0)
    span = float(ts.max() - ts.min())
    width = min(1.0, span / min_bins) or 1.0
    bins = max(int(np.floor(span / width + 1e-9)), 1)
    index = np.floor((ts - ts.min()) / width).astype(np.int64)
    return np.bincount(index, minlength=bins + 1)[:bins].astype(np.float64) / width


def _select(frame: pl.DataFrame, endpoint: str | None, side: str) -> pl.DataFrame:
    if endpoint is None:
        return frame
    chosen = frame.filter(pl.col("endpoint") == endpoint)
    if chosen.height == 0:
        raise PerfagentsError(f"{side} window has no samples for endpoint {endpoint!r}")
    return chosen


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def compare_windows(
    before: pl.DataFrame, after: pl.DataFrame, *, endpoint: str | None = None,
    metric: str = "p95_ms", n_boot: int = N_BOOT, seed: int = 0,
) -> dict[str, Any]:
    """The measured effect of a change: before, after, ratio, 95% CI, one-sided p-value.

    Latency metrics (p50_ms, p95_ms, p99_ms, mean_ms) compare request latencies; the
    p-value is Mann-Whitney "after is faster". ``rps`` compares the mean requests per whole
    second (CI from bootstrapping per-second counts; p-value "after serves more").
    """
    b_frame, a_frame = _select(before, endpoint, "before"), _select(after, endpoint, "after")
    if metric in LATENCY_METRICS:
        b = b_frame.get_column("latency_ms").drop_nulls().to_numpy()
        a = a_frame.get_column("latency_ms").drop_nulls().to_numpy()
        if metric == "mean_ms":
            ratio, lo, hi = bootstrap_mean_ratio_ci(b, a, n_boot=n_boot, seed=seed)
            b_value, a_value = float(np.mean(b)), float(np.mean(a))
        else:
            q = PERCENTILES[metric]
            ratio, lo, hi = bootstrap_ratio_ci(b, a, q=q, n_boot=n_boot, seed=seed)
            b_value, a_value = float(np.quantile(b, q)), float(np.quantile(a, q))
        p_value = rank_test(b, a, alternative="less")
    elif metric == "rps":
        b, a = per_second_rates(b_frame), per_second_rates(a_frame)
        ratio, lo, hi = bootstrap_mean_ratio_ci(b, a, n_boot=n_boot, seed=seed)
        b_value, a_value = float(np.mean(b)), float(np.mean(a))
        p_value = rank_test(b, a, alternative="greater")
    else:
        raise PerfagentsError(f"cannot compare windows on {metric!r} (use p50_ms, p95_ms, p99_ms, mean_ms or rps)")
    return {
        "endpoint": endpoint or "total", "metric": metric,
        "before": round(b_value, 3), "after": round(a_value, 3),
        "ratio": _sig(ratio), "ci95": [_sig(lo), _sig(hi)], "p_value": _sig(p_value, 3),
        "n_before": int(b.size), "n_after": int(a.size),
    }


def noise_floor(window_a: pl.DataFrame, window_b: pl.DataFrame, q: float = 0.95) -> float:
    """How far the quantile moves by noise alone, from two A/A windows of one configuration.

    The relative shift: max(|1 - ratio|, CI half-width); report it as ``{"p95_rel": x}``.
    """
    a = window_a.get_column("latency_ms").drop_nulls().to_numpy()
    b = window_b.get_column("latency_ms").drop_nulls().to_numpy()
    ratio, lo, hi = bootstrap_ratio_ci(a, b, q=q)
    return round(max(abs(1.0 - ratio), (hi - lo) / 2.0), 4)


def decide(
    effect: Mapping[str, Any], noise_rel: float, *, lower_is_better: bool = True, alpha: float = ALPHA,
) -> tuple[bool, str]:
    """Keep a change only when its whole CI lies beyond the noise in the good direction and
    the one-sided p-value (computed by compare_windows in the good direction) is < alpha.

    The noise floor is a ratio, so it bounds both ways multiplicatively: 1 + noise above 1 and
    1 / (1 + noise) below it. (1 - noise would make a floor of 1 or more, e.g. an A/A pair whose
    p95 fell on either side of a slow endpoint's tail, forbid every improvement, even 25x.)
    """
    name = str(effect["metric"]).removesuffix("_ms")
    ratio, (lo, hi), p = effect["ratio"], effect["ci95"], effect["p_value"]
    head = f"{name} ratio {ratio:.3g} [{lo:.3g}, {hi:.3g}]"
    up, down = 1.0 + noise_rel, 1.0 / (1.0 + noise_rel)
    beyond = hi < down if lower_is_better else lo > up
    worse = lo > up if lower_is_better else hi < down
    if worse:
        return False, f"{head} worse, beyond noise {noise_rel:.3g}"
    if not beyond:
        return False, f"{head} within noise {noise_rel:.3g}"
    if p >= alpha:
        return False, f"{head} beyond noise {noise_rel:.3g} but p={p:.3g} >= {alpha:.3g}"
    return True, f"{head} beyond noise {noise_rel:.3g}, p={p:.3g}"


def decide_endpoints(
    before: pl.DataFrame, after: pl.DataFrame, noise_rel: float, *, metric: str = "p95_ms",
    min_samples: int = MIN_ENDPOINT_SAMPLES,
) -> tuple[bool, str, dict[str, Any] | None]:
    """Keep a change that makes some endpoints faster and none slower, each beyond noise.

    For a change aimed at no single endpoint (a pool size, a worker count) whose effect the
    total's p95 hides behind the slowest endpoints. Every endpoint with ``min_samples``
    requests on both sides is compared; "faster" must pass ``decide`` at a Bonferroni-corrected
    alpha (ALPHA / endpoints compared), "slower" is a CI wholly above 1 + noise. The effect
    returned is the improved endpoint with the most requests.
    """
    names = sorted(set(before.get_column("endpoint").drop_nulls()) & set(after.get_column("endpoint").drop_nulls()))
    effects = []
    for name in names:
        b, a = before.filter(pl.col("endpoint") == name), after.filter(pl.col("endpoint") == name)
        if min(b.get_column("latency_ms").drop_nulls().len(), a.get_column("latency_ms").drop_nulls().len()) >= min_samples:
            effects.append(compare_windows(before, after, endpoint=name, metric=metric))
    if not effects:
        return False, f"no endpoint has {min_samples} requests on both sides", None
    alpha = ALPHA / len(effects)
    better = [e for e in effects if decide(e, noise_rel, alpha=alpha)[0]]
    worse = [e for e in effects if e["ci95"][0] > 1.0 + noise_rel]

    def show(group: list[dict[str, Any]]) -> str:
        return ", ".join(f"{e['endpoint']} x{e['ratio']:.3g} [{e['ci95'][0]:.3g}, {e['ci95'][1]:.3g}]" for e in group)

    name = metric.removesuffix("_ms")
    if worse:
        return False, f"{name} worse beyond noise {noise_rel:.3g} on {show(worse)}", worse[0]
    if not better:
        return False, f"{name} better beyond noise {noise_rel:.3g} on none of {len(effects)} endpoints", None
    best = max(better, key=lambda e: e["n_after"])
    return True, (f"{name} better beyond noise {noise_rel:.3g} on {show(better)} (p < {alpha:.2g} each), "
                  f"worse on none of {len(effects)} endpoints"), best


def _observe(expr: Expression, stats: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> tuple[float | None, float | None, str | None]:
    """(value, threshold, problem) of one expression against window stats and the baseline."""
    if expr.endpoint is None:
        section, base = stats.get("total", {}), (baseline or {}).get("total")
    else:
        section = stats.get("endpoints", {}).get(expr.endpoint)
        base = (baseline or {}).get("endpoints", {}).get(expr.endpoint)
        if section is None:
            return None, None, f"endpoint {expr.endpoint!r} has no samples"
    value = section.get(expr.metric)
    if value is None:
        return None, None, f"no {expr.metric} measured"
    try:
        threshold = expr.threshold(base if expr.relative else None)
    except ExpressionError as exc:
        return float(value), None, str(exc)
    return float(value), threshold, None


def _skipped(expr: Expression, stats: Mapping[str, Any]) -> bool:
    if expr.metric in SKIPPED_METRICS:
        return True
    present = expr.metric in stats.get("total", {})
    return not present and expr.metric not in REQUEST_METRICS


def check_quality(
    expressions: list[Expression], stats: Mapping[str, Any], baseline: Mapping[str, Any] | None
) -> list[str]:
    """One line per broken quality threshold (empty when all hold).

    ``responses==baseline`` is skipped (checked elsewhere), and so are metrics the window
    stats do not carry and that requests cannot give (lcp_ms, usd_per_hour ...).
    """
    broken = []
    for expr in expressions:
        if _skipped(expr, stats):
            continue
        value, threshold, problem = _observe(expr, stats, baseline)
        if problem is not None or value is None or threshold is None:
            broken.append(f"{expr.text}: {problem}")
        elif not OPERATORS[expr.op](value, threshold):
            broken.append(f"{expr.text}: observed {value:g}, threshold {threshold:g}")
    return broken


def check_goals(
    expressions: list[Expression], stats: Mapping[str, Any], baseline: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """``[{"expr", "met", "value"}]`` per the DESIGN.md contract; unmeasured goals are unmet."""
    goals = []
    for expr in expressions:
        if expr.metric in SKIPPED_METRICS:
            continue
        value, threshold, problem = _observe(expr, stats, baseline)
        met = problem is None and value is not None and threshold is not None and OPERATORS[expr.op](value, threshold)
        goals.append({"expr": expr.text, "met": bool(met), "value": value})
    return goals
