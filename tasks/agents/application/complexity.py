"""Algorithmic complexity of an endpoint with a size parameter: measure, fit, report.

A spec declares probes (``complexity:`` list of ``ComplexityProbe``); after the load window
each probe's path is requested at growing sizes (bounded in time), and the best latencies
are fitted two ways: a power law ``b + a*n^k`` (``k`` is the reported exponent) and the
classes O(1), O(log n), O(n), O(n log n), O(n^2) as ``a*f(n) + b`` (a, b >= 0, least squares
on relative error). The probes themselves are spec input: ``ComplexityProbe`` lives in tasks/spec.py.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Any

from tasks.findings import Finding, Severity
from tasks.spec import MIN_COMPLEXITY_SIZES, ComplexityProbe

if TYPE_CHECKING:  # numpy, scipy and httpx load lazily, when a probe is measured
    import httpx
    import numpy as np

AGENT = "application"
REQUEST_TIMEOUT_S = 5.0
CLASSES = ("O(1)", "O(log n)", "O(n)", "O(n log n)", "O(n^2)")
SUPERLINEAR = ("O(n log n)", "O(n^2)")
SUPERLINEAR_MIN_EXPONENT = 1.2
PARSIMONY = 1.5  # the simplest class whose relative error is within this factor of the best
FLAT_RMS = 0.1  # latencies within ~10% of one constant: O(1)
MIN_GROWTH = 1.5  # largest / smallest median below this: O(1)
MAX_EXPONENT = 4.0
GROWING_PART = 0.2  # the power fit's n^k term must make this share of the largest latency


def measure_probe(client: httpx.Client, probe: ComplexityProbe, deadline: float) -> dict[str, Any]:
    """Latencies per size in interleaved rounds (a slow moment hits every size alike), within ``deadline``.

    Round one goes up the sizes and stops before a size whose projected cost (quadratic
    growth from the last one) would overrun; later rounds repeat the sizes kept. The cost of
    a size is its best latency (as ``timeit`` does: interference on a shared machine only
    ever adds time); the median is kept as evidence.
    """
    out: dict[str, Any] = {"name": probe.name, "path": probe.path, "repeats": probe.repeats}
    _get(client, probe.path.replace("{n}", str(probe.sizes[0])), deadline)  # warm-up, discarded
    latencies: dict[int, list[float]] = {}
    prev: tuple[int, float] | None = None
    for n in probe.sizes:
        if prev is not None and prev[1] / 1000 * (n / prev[0]) ** 2 * probe.repeats > deadline - time.monotonic():
            out["stopped"] = f"size {n} would overrun the time bound"
            break
        latencies[n] = [_get(client, probe.path.replace("{n}", str(n)), deadline)]
        prev = (n, latencies[n][0])
    for _ in range(probe.repeats - 1):
        if sum(min(v) for v in latencies.values()) / 1000 > deadline - time.monotonic():
            out["stopped"] = "fewer repeats: the time bound"
            break
        for n, values in latencies.items():
            values.append(_get(client, probe.path.replace("{n}", str(n)), deadline))
    out["sizes"] = list(latencies)
    out["best_ms"] = [round(min(v), 3) for v in latencies.values()]
    out["median_ms"] = [round(statistics.median(v), 3) for v in latencies.values()]
    out["latencies_ms"] = [[round(x, 3) for x in v] for v in latencies.values()]
    if len(latencies) >= MIN_COMPLEXITY_SIZES:
        out["fit"] = fit_complexity(out["sizes"], out["best_ms"])
    return out


def _get(client: httpx.Client, path: str, deadline: float) -> float:
    timeout = min(REQUEST_TIMEOUT_S, deadline - time.monotonic())
    if timeout <= 0:
        raise TimeoutError("complexity probe ran out of time")
    started = time.perf_counter()
    response = client.get(path, timeout=timeout)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code >= 400:
        raise RuntimeError(f"GET {path} answered {response.status_code}")
    return elapsed


def class_values(name: str, n: np.ndarray) -> np.ndarray:
    import numpy as np

    return {"O(1)": np.ones_like(n), "O(log n)": np.log(n), "O(n)": n, "O(n log n)": n * np.log(n),
            "O(n^2)": n ** 2}[name]


def fit_complexity(sizes: list[int], medians_ms: list[float]) -> dict[str, Any]:
    """Power-law exponent and the best-fitting complexity class (relative least squares)."""
    import numpy as np
    from scipy import optimize

    n = np.asarray(sizes, dtype=float)
    m = np.maximum(np.asarray(medians_ms, dtype=float), 1e-6)
    rms: dict[str, float] = {}
    coef: dict[str, list[float]] = {}
    for name in CLASSES:
        f = class_values(name, n)
        design = np.column_stack([f, np.ones_like(n)]) if name != "O(1)" else np.ones((len(n), 1))
        ab, _ = optimize.nnls(design / m[:, None], np.ones_like(m))
        pred = design @ ab
        rms[name] = float(np.sqrt(np.mean(((pred - m) / m) ** 2)))
        coef[name] = [float(x) for x in ab]
    chosen = "O(1)"
    if rms["O(1)"] > FLAT_RMS and m.max() / m.min() >= MIN_GROWTH:
        best = min(rms.values())
        chosen = next(name for name in CLASSES if rms[name] <= PARSIMONY * best)
    slope = float(np.polyfit(np.log(n), np.log(m), 1)[0])
    exponent = max(0.0, slope) if chosen == "O(1)" else power_exponent(n, m, slope)
    return {"exponent": round(exponent, 3), "loglog_slope": round(slope, 3),
            "class": chosen, "relative_rms": {k: round(v, 4) for k, v in rms.items()},
            "coefficients": {k: [float(f"{x:.4g}") for x in v] for k, v in coef.items()}}


def power_exponent(n: np.ndarray, m: np.ndarray, slope: float) -> float:
    """``k`` of ``m = b + a*n^k`` (b: the fixed per-request cost); the log-log slope if it won't fit."""
    import numpy as np
    from scipy import optimize

    top = float(np.log(m[-1] / m[-2]) / np.log(n[-1] / n[-2])) if len(n) >= 2 else slope
    k0 = min(max(top, 0.05), MAX_EXPONENT - 0.05)
    a0 = max((m[-1] - m[0]) / max(n[-1] ** k0, 1e-9), 1e-12)
    try:
        params, _ = optimize.curve_fit(lambda x, a, b, k: b + a * np.power(x, k), n, m,
                                       p0=[a0, max(float(m[0]) * 0.9, 1e-6), k0], sigma=m,
                                       bounds=([0, 0, 0], [np.inf, np.inf, MAX_EXPONENT]), maxfev=5000)
        a, _, k = (float(x) for x in params)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return slope
    if not math.isfinite(k) or a * n[-1] ** k < GROWING_PART * m[-1]:
        return max(0.0, slope)  # (almost) no growing part: k is not identifiable
    return k


def complexity_findings(results: list[dict[str, Any]]) -> list[Finding]:
    """A ``superlinear_complexity`` finding for each probe whose latency grows faster than n."""
    out: list[Finding] = []
    for res in results:
        fit = res.get("fit")
        if not fit or fit["class"] not in SUPERLINEAR or fit["exponent"] < SUPERLINEAR_MIN_EXPONENT:
            continue
        severity: Severity = "high" if fit["exponent"] >= 1.8 or res["best_ms"][-1] >= 500 else "medium"
        evidence = {"sizes": res["sizes"], "best_ms": res["best_ms"], "median_ms": res["median_ms"],
                    "repeats": res["repeats"],
                    "exponent": fit["exponent"], "loglog_slope": fit["loglog_slope"], "class": fit["class"],
                    "relative_rms": fit["relative_rms"]}
        out.append(Finding(AGENT, "superlinear_complexity", res["path"], severity, evidence,
                           {"ms_at_largest_size": res["best_ms"][-1], "exponent": fit["exponent"]},
                           endpoint=res["name"]))
    return out
