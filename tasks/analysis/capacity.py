"""Capacity model: fit the Universal Scalability Law to a step-load run and size the fleet.

    X(N) = lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

N is the offered concurrency (Locust users), X the successful requests per second. sigma is
contention (queueing on a shared resource), kappa coherency (crosstalk that makes throughput
fall past a peak), lambda the single-user throughput. The peak is at N* = sqrt((1-sigma)/kappa).

Sizing assumption (documented in every recommendation's `reason`): within one instance the
fitted USL curve applies; instances scale out linearly behind a load balancer, each loaded
no further than its USL peak (never past the highest concurrency actually measured).

`step_plan` reproduces the schedule of `tasks/load/step_shape.py` (the Locust LoadTestShape)
so samples can be bucketed per step; this module never imports locust.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import OptimizeWarning, curve_fit

from tasks.errors import CapacityError

MIN_POINTS = 3  # three parameters need at least three distinct concurrency levels
MIN_FIT_LEVELS = 4  # choose_holdout keeps at least this many levels in the fit
HOLDOUT_EVERY = 3  # choose_holdout holds back every third interior level
RAMP_S = 2.0  # seconds skipped at the start of each step (users still spawning)
RAMP_MAX_FRACTION = 0.5  # ...but never more than this share of a step
MAX_FIT_EVALS = 20_000


@dataclass(frozen=True)
class UslFit:
    sigma: float
    kappa: float
    lam: float
    sigma_stderr: float
    kappa_stderr: float
    lam_stderr: float  # 0.0 when lambda was fixed to X(1)
    r2: float
    peak_concurrency: float  # inf when kappa == 0 (no retrograde region)
    peak_throughput: float  # X(N*); lambda/sigma (the asymptote) when kappa == 0
    n_points: int
    n_max: float  # the highest concurrency measured
    free_lambda: bool = True

    def predict(self, n: float | Sequence[float] | np.ndarray) -> np.ndarray | float:
        """Throughput the fitted curve predicts at concurrency n (scalar in, scalar out)."""
        values = usl(np.asarray(n, dtype=float), self.lam, self.sigma, self.kappa)
        return float(values) if np.ndim(values) == 0 else values


def usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """The Universal Scalability Law."""
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


def compute_peak(lam: float, sigma: float, kappa: float) -> tuple[float, float]:
    """(N*, X(N*)); N* is clamped to >= 1."""
    if sigma >= 1.0:
        return 1.0, lam
    if kappa <= 0.0:
        return math.inf, (lam / sigma if sigma > 0 else math.inf)
    n_star = max(1.0, math.sqrt((1.0 - sigma) / kappa))
    return n_star, float(usl(np.asarray(n_star), lam, sigma, kappa))


def _check_points(n: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        n_arr = np.asarray(n, dtype=float).ravel()
        x_arr = np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise CapacityError(f"capacity points are not numbers: {exc}") from exc
    if n_arr.size != x_arr.size:
        raise CapacityError(
            f"capacity points: {n_arr.size} concurrency levels but {x_arr.size} throughputs"
        )
    if not (np.isfinite(n_arr).all() and np.isfinite(x_arr).all()):
        raise CapacityError("capacity points contain NaN or infinite values")
    if (n_arr <= 0).any() or (x_arr <= 0).any():
        raise CapacityError("capacity points must be positive (concurrency > 0, throughput > 0)")
    if np.unique(n_arr).size < MIN_POINTS:
        raise CapacityError(
            f"capacity fit needs at least {MIN_POINTS} distinct concurrency levels, got {np.unique(n_arr).size}"
        )
    return n_arr, x_arr


def _initial_guess(n: np.ndarray, x: np.ndarray, lam: float) -> tuple[float, float]:
    """Gunther's linearisation: N*lam/X - 1 = sigma*(N-1) + kappa*N*(N-1), by least squares."""
    design = np.column_stack([n - 1.0, n * (n - 1.0)])
    (sigma, kappa), *_ = np.linalg.lstsq(design, n * lam / x - 1.0, rcond=None)
    return float(np.clip(sigma, 1e-4, 0.99)), float(max(kappa, 1e-8))


def fit_usl(n: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray, *, free_lambda: bool = True) -> UslFit:
    """Least-squares USL fit with standard errors from the Jacobian's covariance.

    free_lambda=False fixes lambda to X(1), which needs a measurement at N = 1 (averaged
    when N = 1 was measured more than once)."""
    n_arr, x_arr = _check_points(n, x)
    lowest = n_arr == n_arr.min()
    lam0 = float(np.mean(x_arr[lowest] / n_arr[lowest]))
    if not free_lambda:
        if not (n_arr == 1.0).any():
            raise CapacityError("fixed-lambda USL fit needs a measurement at concurrency 1")
        lam0 = float(np.mean(x_arr[n_arr == 1.0]))
    sigma0, kappa0 = _initial_guess(n_arr, x_arr, lam0)

    model: Callable[..., np.ndarray]
    if free_lambda:
        model, p0 = usl, [lam0, sigma0, kappa0]
        bounds = ([1e-12, 0.0, 0.0], [np.inf, 1.0, np.inf])
    else:

        def model(nn: np.ndarray, sigma: float, kappa: float) -> np.ndarray:
            return usl(nn, lam0, sigma, kappa)

        p0, bounds = [sigma0, kappa0], ([0.0, 0.0], [1.0, np.inf])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # no dof left: covariance is inf
            params, cov = curve_fit(
                model, n_arr, x_arr, p0=p0, bounds=bounds, x_scale="jac", max_nfev=MAX_FIT_EVALS
            )
    except (RuntimeError, ValueError) as exc:
        raise CapacityError(f"USL fit did not converge: {exc}") from exc
    stderr = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    if free_lambda:
        lam, sigma, kappa = (float(v) for v in params)
        lam_se, sigma_se, kappa_se = (float(v) for v in stderr)
    else:
        lam, (sigma, kappa), lam_se = lam0, (float(v) for v in params), 0.0
        sigma_se, kappa_se = (float(v) for v in stderr)

    residuals = x_arr - usl(n_arr, lam, sigma, kappa)
    total = float(np.sum((x_arr - x_arr.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residuals**2)) / total if total > 0 else 1.0
    peak_n, peak_x = compute_peak(lam, sigma, kappa)
    return UslFit(
        sigma=sigma, kappa=kappa, lam=lam,
        sigma_stderr=sigma_se, kappa_stderr=kappa_se, lam_stderr=lam_se,
        r2=r2, peak_concurrency=peak_n, peak_throughput=peak_x,
        n_points=int(n_arr.size), n_max=float(n_arr.max()), free_lambda=free_lambda,
    )  # fmt: skip


def choose_holdout(levels: Sequence[float]) -> list[float]:
    """Interior levels to hold back from the fit (every HOLDOUT_EVERY-th), keeping the
    lowest and highest level and at least MIN_FIT_LEVELS levels in the fit; [] if too few."""
    distinct = sorted(set(float(v) for v in levels))
    picked = distinct[HOLDOUT_EVERY - 1 : -1 : HOLDOUT_EVERY]
    while picked and len(distinct) - len(picked) < MIN_FIT_LEVELS:
        picked.pop()
    return picked


def holdout_error(
    n: Sequence[float], x: Sequence[float], holdout: Sequence[float], *, free_lambda: bool = True
) -> dict:
    """Fit on the levels not held back, predict the held-back ones.

    Returns {"levels", "predicted", "measured", "mape"}; mape is a fraction (0.05 = 5%)."""
    n_arr, x_arr = _check_points(n, x)
    if len(holdout) == 0:
        raise CapacityError("holdout needs at least one concurrency level to hold back")
    missing = sorted(set(float(h) for h in holdout) - set(n_arr.tolist()))
    if missing:
        raise CapacityError(f"holdout levels {missing} were not measured")
    held = np.isin(n_arr, np.asarray(holdout, dtype=float))
    fit = fit_usl(n_arr[~held], x_arr[~held], free_lambda=free_lambda)
    predicted = np.asarray(fit.predict(n_arr[held]), dtype=float)
    measured = x_arr[held]
    return {
        "levels": n_arr[held].tolist(),
        "predicted": predicted.tolist(),
        "measured": measured.tolist(),
        "mape": float(np.mean(np.abs(predicted - measured) / measured)),
    }


def step_plan(levels: Sequence[int], step_s: float, start_ts: float) -> list[dict]:
    """The schedule tasks/load/step_shape.py runs: step i holds levels[i] users during
    [start_ts + i*step_s, start_ts + (i+1)*step_s)."""
    if not levels or step_s <= 0:
        raise CapacityError(
            f"step plan needs levels and a positive step length, got {list(levels)}, {step_s}"
        )
    return [
        {
            "users": int(users),
            "start_ts": start_ts + i * step_s,
            "end_ts": start_ts + (i + 1) * step_s,
        }
        for i, users in enumerate(levels)
    ]


def read_step_plan(path: str | Path) -> list[dict]:
    """The schedule step_shape.py wrote to PERFAGENTS_STEP_PLAN_OUT (with its real start time)."""
    try:
        plan = json.loads(Path(path).read_text())
        return step_plan(plan["levels"], float(plan["step_s"]), float(plan["start_ts"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CapacityError(f"cannot read step plan {path}: {exc}") from exc


def throughput_by_level(
    samples: pl.DataFrame, steps: list[dict], *, ramp_s: float = RAMP_S
) -> pl.DataFrame:
    """Successful requests per second at each step's concurrency.

    A sample succeeded when Locust recorded no error (null or empty `error`), so catch_response
    decisions are kept.
    The first ramp_s seconds of each step (capped at RAMP_MAX_FRACTION of it) are skipped; the
    rest is cut into whole seconds, whose counts give the per-second spread."""
    missing = {"ts", "error"} - set(samples.columns)
    if missing:
        raise CapacityError(f"samples lack columns {sorted(missing)}")
    ts = samples["ts"].cast(pl.Float64).to_numpy()
    error = samples["error"].cast(pl.Utf8)
    ok = (error.is_null() | (error == "")).fill_null(True).to_numpy()
    rows = []
    for step in steps:
        length = float(step["end_ts"]) - float(step["start_ts"])
        begin = float(step["start_ts"]) + min(ramp_s, RAMP_MAX_FRACTION * length)
        seconds = int(math.floor(float(step["end_ts"]) - begin))
        if seconds < 1:
            raise CapacityError(
                f"step at {step['users']} users leaves under 1 s to measure after the ramp"
            )
        end = begin + seconds
        inside = (ts >= begin) & (ts < end)
        per_second = np.bincount((ts[inside & ok] - begin).astype(int), minlength=seconds)[:seconds]
        rows.append({
            "users": int(step["users"]),
            "start_ts": begin,
            "end_ts": end,
            "seconds": seconds,
            "requests": int(per_second.sum()),
            "failures": int((inside & ~ok).sum()),
            "rps": float(per_second.mean()),
            "rps_std": float(per_second.std(ddof=1)) if seconds > 1 else 0.0,
            "rps_min": float(per_second.min()),
            "rps_max": float(per_second.max()),
        })  # fmt: skip
    return pl.DataFrame(rows, schema={
        "users": pl.Int64, "start_ts": pl.Float64, "end_ts": pl.Float64, "seconds": pl.Int64,
        "requests": pl.Int64, "failures": pl.Int64, "rps": pl.Float64, "rps_std": pl.Float64,
        "rps_min": pl.Float64, "rps_max": pl.Float64,
    })  # fmt: skip


def _size_option(
    fit: UslFit, workers: int, goal_rps: float, cost_per_instance: float, max_instances: int
) -> dict:
    capacity = float(fit.predict(min(fit.peak_concurrency, fit.n_max)))
    needed = math.ceil(goal_rps / capacity - 1e-9) if capacity > 0 else math.inf  # 1e-9: float dust
    return {
        "workers": workers,
        "instances": int(needed) if needed <= max_instances else None,
        "instances_needed": needed,
        "capacity_rps_per_instance": capacity,
        "concurrency_per_instance": min(fit.peak_concurrency, fit.n_max),
        "usd_per_instance_hour": cost_per_instance,
    }


def recommend(
    fit: UslFit,
    goal_rps: float,
    *,
    per_instance_workers: int,
    usd_per_worker_hour: float,
    usd_per_instance_hour: float,
    max_instances: int = 64,
    alternatives: Mapping[int, UslFit] | None = None,
) -> dict:
    """The cheapest fleet that meets goal_rps.

    `fit` was measured on one instance running `per_instance_workers` workers; `alternatives`
    maps other worker counts to their own fits (one step-load each). Each option needs
    ceil(goal / capacity) instances, capacity being the fitted throughput at the USL peak
    (or at the highest measured concurrency if the peak lies beyond it); an instance costs
    usd_per_instance_hour + workers * usd_per_worker_hour. Ties go to fewer instances."""
    if not goal_rps > 0:
        raise CapacityError(f"throughput goal must be positive, got {goal_rps}")
    fits = {per_instance_workers: fit, **dict(alternatives or {})}
    options = []
    for workers, option_fit in sorted(fits.items()):
        per_instance = usd_per_instance_hour + workers * usd_per_worker_hour
        options.append(_size_option(option_fit, workers, goal_rps, per_instance, max_instances))
    feasible = [o for o in options if o["instances"] is not None]
    assumption = (
        "assumes instances scale out linearly behind a load balancer and each follows its "
        "fitted USL curve up to its peak"
    )
    if not feasible:
        best = max(options, key=lambda o: o["capacity_rps_per_instance"])
        return {
            "goal_rps": goal_rps, "workers": best["workers"], "instances": None, "usd_per_hour": None,
            "feasible": False,
            "reason": (
                f"goal {goal_rps:g} rps needs {best['instances_needed']} instances of "
                f"{best['capacity_rps_per_instance']:.1f} rps, more than max_instances={max_instances}; "
                + assumption
            ),
            "options": options,
        }  # fmt: skip
    chosen = min(
        feasible, key=lambda o: (o["instances"] * o["usd_per_instance_hour"], o["instances"])
    )
    usd = chosen["instances"] * chosen["usd_per_instance_hour"]
    beyond = fits[chosen["workers"]].peak_concurrency > fits[chosen["workers"]].n_max
    return {
        "goal_rps": goal_rps,
        "workers": chosen["workers"],
        "instances": chosen["instances"],
        "usd_per_hour": usd,
        "feasible": True,
        "concurrency_per_instance": chosen["concurrency_per_instance"],
        "capacity_rps_per_instance": chosen["capacity_rps_per_instance"],
        "reason": (
            f"{chosen['instances']} x {chosen['workers']}-worker instances at "
            f"{chosen['capacity_rps_per_instance']:.1f} rps each "
            f"(concurrency {chosen['concurrency_per_instance']:.0f}) meet {goal_rps:g} rps for "
            f"${usd:.4f}/h"
            + (
                "; the USL peak lies beyond the measured range, capped at the highest level measured"
                if beyond
                else ""
            )
            + "; "
            + assumption
        ),
        "options": options,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def capacity_json(fit: UslFit, recommendation: dict, holdout: dict | None = None) -> dict:
    """The `capacity` block of the machine-readable result (DESIGN.md contract), plus the
    fit's standard errors, r2, whether the peak lies within the measured levels (else it is an
    extrapolation), the recommendation's feasibility and reason, and the holdout error.
    Non-finite numbers (an unbounded peak, an undetermined error) become null."""
    result: dict[str, Any] = {
        "sigma": fit.sigma,
        "kappa": fit.kappa,
        "lambda": fit.lam,
        "peak_concurrency": _finite(fit.peak_concurrency),
        "peak_rps": _finite(fit.peak_throughput),
        "recommendation": {
            key: recommendation.get(key)
            for key in ("goal_rps", "workers", "instances", "usd_per_hour")
        },
        "stderr": {
            "sigma": _finite(fit.sigma_stderr),
            "kappa": _finite(fit.kappa_stderr),
            "lambda": _finite(fit.lam_stderr),
        },
        "peak_within_measured_range": fit.peak_concurrency <= fit.n_max,
        "n_max": fit.n_max,
        "r2": _finite(fit.r2),
        "n_points": fit.n_points,
        "free_lambda": fit.free_lambda,
    }
    result["recommendation"]["feasible"] = recommendation.get("feasible")
    result["recommendation"]["reason"] = recommendation.get("reason")
    if holdout is not None:
        result["holdout"] = holdout
    return result
