"""The expectations gate: is this window a valid measurement? (DESIGN principle 4)

One Great Expectations 1.x suite runs on every window's samples (a pandas frame in an
ephemeral context) before its numbers are used:

    enough_samples               row count >= min_samples
    latency_not_null             latency_ms has no nulls
    latency_non_negative         latency_ms >= 0
    error_rate_within_threshold  mean(is_error) <= max_error_rate   (only when given)
    loadgen_not_saturated        load generator CPU <= max_loadgen_cpu_pct
    machine_quiet                CPU used by processes that are neither the toolkit, the target
                                 nor the load generator <= max_foreign_cores (outside load is
                                 kept out of decisions, not averaged in)
    samples_cover_window_start   min(ts) <= window_start + max_gap_s
    samples_cover_window_end     max(ts) >= window_end - max_gap_s
    no_gaps                      max seconds between consecutive samples <= max_gap_s
    percentiles_monotone         p50 <= p95 <= p99 per endpoint (plain Python, not GX)

Thresholds are suite parameters ($PARAMETER), so the context and the two suites (with and
without the error-rate rule) are built once per process and reused; a lock serialises use.
great_expectations is imported lazily (the import alone takes seconds): ``preload`` does it on a
thread while a run starts, and a window's load waits for it (``wait_preloaded``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tasks.analysis.stats import window_stats

MIN_SAMPLES = 200
MAX_GAP_S = 2.0
MAX_LOADGEN_CPU_PCT = 90.0
# Cores of outside work a window tolerates; PERFAGENTS_MAX_FOREIGN_CORES overrides it (a shared
# CI runner).
MAX_FOREIGN_CORES = float(os.environ.get("PERFAGENTS_MAX_FOREIGN_CORES", "0.3"))
SUITE_NAME = "perfagents-window"
ERROR_RULE = "error_rate_within_threshold"  # the rule a window fails for its target's errors, not its measurement
LOADGEN_RULE = "loadgen_not_saturated"  # the rule a window fails when Locust, not the target, was the limit

_LOCK = threading.Lock()
_GX: dict[str, Any] = {}  # the cached context, batch definition and suites
_PRELOAD: list[threading.Thread] = []
PRELOAD_WAIT_S = 120.0


@dataclass
class GateResult:
    """The gate's verdict: ``rows`` fit the store's ``validations`` table."""

    valid: bool
    reasons: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


# (name, GX expectation class, its kwargs, the reason shown when it fails)
def _rules(with_error_rate: bool) -> list[tuple[str, str, Any, str]]:
    p = lambda name: {"$PARAMETER": name}  # noqa: E731
    rules = [
        ("enough_samples", "ExpectTableRowCountToBeBetween", {"min_value": p("min_samples")},
         "too few samples: {observed} < {min_samples}"),
        ("latency_not_null", "ExpectColumnValuesToNotBeNull", {"column": "latency_ms"},
         "{unexpected} samples have a null latency"),
        ("latency_non_negative", "ExpectColumnValuesToBeBetween", {"column": "latency_ms", "min_value": 0},
         "{unexpected} samples have a negative latency"),
        (ERROR_RULE, "ExpectColumnMeanToBeBetween",
         {"column": "is_error", "max_value": p("max_error_rate")},
         "error_rate {observed} above {max_error_rate}"),
        (LOADGEN_RULE, "ExpectColumnMaxToBeBetween",
         {"column": "loadgen_cpu_pct", "max_value": p("max_loadgen_cpu_pct")},
         "load generator saturated: CPU {observed}% > {max_loadgen_cpu_pct}%"),
        ("machine_quiet", "ExpectColumnMaxToBeBetween",
         {"column": "foreign_cores", "max_value": p("max_foreign_cores")},
         "disturbed by outside load: {observed} cores > {max_foreign_cores}"),
        ("samples_cover_window_start", "ExpectColumnMinToBeBetween",
         {"column": "ts", "max_value": p("start_by")},
         "samples start {late_s} s after the window start"),
        ("samples_cover_window_end", "ExpectColumnMaxToBeBetween",
         {"column": "ts", "min_value": p("end_from")},
         "samples end {early_s} s before the window end"),
        ("no_gaps", "ExpectColumnMaxToBeBetween", {"column": "gap_s", "max_value": p("max_gap_s")},
         "a {observed} s gap without samples (max {max_gap_s} s)"),
    ]
    return [r for r in rules if with_error_rate or r[0] != ERROR_RULE]


def preload() -> None:
    """Import great_expectations and build the suites on a thread (4-5 s of CPU here), while a
    run starts its Prefect server and its target; ``wait_preloaded`` keeps it out of windows."""
    if _GX or _PRELOAD:
        return
    thread = threading.Thread(target=_setup_locked, name="perfagents-gx-preload", daemon=True)
    _PRELOAD.append(thread)
    thread.start()


def wait_preloaded() -> None:
    """Before a window's load starts: the preload (if any) has finished, so its CPU is not
    competing with the target (bounded; the first validation builds the suites otherwise)."""
    if _PRELOAD:
        _PRELOAD[0].join(PRELOAD_WAIT_S)


def _setup_locked() -> None:
    with _LOCK:
        try:
            _gx_setup()
        except Exception:  # noqa: BLE001 - the first validation builds it again and raises there
            pass


def _gx_setup() -> dict[str, Any]:
    """Build (once) the ephemeral context, the dataframe batch definition and both suites."""
    if _GX:
        return _GX
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # after the import: GX configures its own loggers when it loads
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.ERROR)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("perfagents").add_dataframe_asset("window_samples")
    suites = {}
    for with_error_rate in (True, False):
        suite = context.suites.add(gx.ExpectationSuite(name=f"{SUITE_NAME}-{int(with_error_rate)}"))
        for name, cls, kwargs, _ in _rules(with_error_rate):
            suite.add_expectation(getattr(gxe, cls)(**kwargs, meta={"name": name}))
        suites[with_error_rate] = suite
    _GX.update(context=context, batch=asset.add_batch_definition_whole_dataframe("whole"), suites=suites)
    return _GX


def _gx_frame(samples: pl.DataFrame, loadgen_cpu_pct: float, foreign_cores: float = 0.0) -> Any:
    """The pandas frame GX validates, with the derived columns the suite needs."""
    frame = pl.DataFrame(
        {
            "ts": samples["ts"] if "ts" in samples.columns else [],
            "latency_ms": samples["latency_ms"] if "latency_ms" in samples.columns else [],
            "error": samples["error"] if "error" in samples.columns else [],
        },
        schema={"ts": pl.Float64, "latency_ms": pl.Float64, "error": pl.Utf8},
        strict=False,
    ).sort("ts", nulls_last=True)
    return frame.select(
        pl.col("ts"),
        pl.col("latency_ms"),
        pl.col("error").is_not_null().cast(pl.Float64).alias("is_error"),
        pl.col("ts").diff().fill_null(0.0).alias("gap_s"),
        pl.lit(float(loadgen_cpu_pct), dtype=pl.Float64).alias("loadgen_cpu_pct"),
        pl.lit(float(foreign_cores), dtype=pl.Float64).alias("foreign_cores"),
    ).to_pandas()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _fmt(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


def check_percentiles_monotone(stats: dict[str, Any]) -> list[str]:
    """One line per endpoint (or the total) whose p50 <= p95 <= p99 does not hold."""
    entries = {**stats.get("endpoints", {}), "total": stats.get("total", {})}
    broken = []
    for name, entry in entries.items():
        p50, p95, p99 = (entry.get(k) for k in ("p50_ms", "p95_ms", "p99_ms"))
        if None in (p50, p95, p99):
            continue
        if not p50 <= p95 <= p99:
            broken.append(f"{name}: percentiles not monotone (p50 {p50}, p95 {p95}, p99 {p99})")
    return broken


def validate_window(
    samples: pl.DataFrame, *, window_start: float, window_end: float, loadgen_cpu_pct: float,
    max_error_rate: float | None = None, min_samples: int = MIN_SAMPLES,
    max_gap_s: float = MAX_GAP_S, max_loadgen_cpu_pct: float = MAX_LOADGEN_CPU_PCT,
    foreign_cores: float = 0.0, max_foreign_cores: float = MAX_FOREIGN_CORES,
) -> GateResult:
    """Run the suite on one window's samples; a failed rule makes the window invalid."""
    params = {
        "min_samples": int(min_samples), "max_gap_s": float(max_gap_s),
        "max_loadgen_cpu_pct": float(max_loadgen_cpu_pct), "max_foreign_cores": float(max_foreign_cores),
        "start_by": float(window_start) + max_gap_s, "end_from": float(window_end) - max_gap_s,
    }
    if max_error_rate is not None:
        params["max_error_rate"] = float(max_error_rate)
    frame = _gx_frame(samples, loadgen_cpu_pct, foreign_cores if math.isfinite(foreign_cores) else 0.0)
    with _LOCK:
        gx_state = _gx_setup()
        suite = gx_state["suites"][max_error_rate is not None]
        batch = gx_state["batch"].get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(suite, expectation_parameters=params)
    rules = {name: (kwargs, reason) for name, _, kwargs, reason in _rules(max_error_rate is not None)}
    rows, reasons = [], []
    for res in outcome.results:
        name = res.expectation_config.meta["name"]
        result = res.result or {}
        observed = result.get("observed_value", None)
        detail = {
            "gx_type": res.expectation_config.type,
            "observed_value": observed,
            "unexpected_count": result.get("unexpected_count"),
            "element_count": result.get("element_count"),
            "thresholds": {v["$PARAMETER"]: params[v["$PARAMETER"]]
                           for v in rules[name][0].values() if isinstance(v, dict)},
        }
        rows.append({"expectation": name, "success": bool(res.success), "observed": _jsonable(detail)})
        if not res.success:
            reasons.append(_reason(name, rules[name][1], observed, result, params, res.exception_info))
    duration = window_end - window_start
    stats = window_stats(samples, duration if duration > 0 else 1.0) if samples.height else {}
    monotone = check_percentiles_monotone(stats)
    rows.append({"expectation": "percentiles_monotone", "success": not monotone,
                 "observed": {"violations": monotone}})
    reasons += monotone
    return GateResult(valid=not reasons, reasons=reasons, rows=rows)


def _reason(
    name: str, template: str, observed: Any, result: dict[str, Any], params: dict[str, Any],
    exception_info: Any,
) -> str:
    if exception_info and exception_info.get("raised_exception"):
        message = str(exception_info.get("exception_message", "")).splitlines()[:1]
        return f"{name}: could not be evaluated ({''.join(message)})"
    if observed is None and "observed_value" in result:
        return f"{name}: no samples to measure"
    values = {
        **{k: _fmt(v) for k, v in params.items()},
        "observed": _fmt(observed),
        "unexpected": result.get("unexpected_count"),
    }
    if name == "samples_cover_window_start":
        values["late_s"] = _fmt(float(observed) - (params["start_by"] - params["max_gap_s"]))
    if name == "samples_cover_window_end":
        values["early_s"] = _fmt(params["end_from"] + params["max_gap_s"] - float(observed))
    return template.format(**values)
