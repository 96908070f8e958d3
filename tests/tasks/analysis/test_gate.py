from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tasks.analysis.gate import MAX_GAP_S, MIN_SAMPLES, check_percentiles_monotone, validate_window
from tasks.store import Store, dumps, now

START, END = 1000.0, 1020.0
ALL_RULES = {
    "enough_samples", "latency_not_null", "latency_non_negative", "error_rate_within_threshold",
    "loadgen_not_saturated", "samples_cover_window_start", "samples_cover_window_end", "no_gaps",
    "percentiles_monotone", "machine_quiet",
}


def good_window(n: int = 2000, *, start: float = START, end: float = END) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "ts": np.linspace(start + 0.01, end - 0.01, n),
            "endpoint": rng.choice(["catalog", "checkout"], n),
            "method": ["GET"] * n,
            "latency_ms": rng.lognormal(3.0, 0.5, n),
            "status": pl.Series([200] * n, dtype=pl.Int32),
            "bytes": pl.Series([512] * n, dtype=pl.Int64),
            "error": pl.Series([None] * n, dtype=pl.Utf8),
        }
    )


def gate(samples: pl.DataFrame, **kwargs):
    kwargs.setdefault("loadgen_cpu_pct", 40.0)
    kwargs.setdefault("max_error_rate", 0.01)
    return validate_window(samples, window_start=START, window_end=END, **kwargs)


def failed(result) -> set[str]:
    return {row["expectation"] for row in result.rows if not row["success"]}


def with_latency(samples: pl.DataFrame, index: int, value: float | None) -> pl.DataFrame:
    latency = samples["latency_ms"].to_list()
    latency[index] = value
    return samples.with_columns(pl.Series("latency_ms", latency, dtype=pl.Float64))


def test_good_window_passes_and_rows_fit_the_store(tmp_path) -> None:
    result = gate(good_window())
    assert result.valid and result.reasons == []
    assert {row["expectation"] for row in result.rows} == ALL_RULES
    assert all(row["success"] for row in result.rows)
    count = next(r for r in result.rows if r["expectation"] == "enough_samples")["observed"]
    assert count["observed_value"] == 2000 and count["thresholds"] == {"min_samples": MIN_SAMPLES}
    with Store(tmp_path / "s.duckdb") as store:
        for row in result.rows:
            store.insert_row("validations", {"window_id": "w1", "expectation": row["expectation"],
                                             "success": row["success"], "observed": dumps(row["observed"]),
                                             "checked_at": now()})
        stored = store.rows("SELECT count(*) AS n, bool_and(success) AS ok FROM validations")
    assert stored == [{"n": len(ALL_RULES), "ok": True}]


def test_too_few_samples() -> None:
    result = gate(good_window(MIN_SAMPLES - 1))
    assert not result.valid and failed(result) == {"enough_samples"}
    assert result.reasons == [f"too few samples: {MIN_SAMPLES - 1} < {MIN_SAMPLES}"]


def test_null_latency() -> None:
    result = gate(with_latency(good_window(), 10, None))
    assert failed(result) == {"latency_not_null"} and result.reasons == ["1 samples have a null latency"]


def test_negative_latency() -> None:
    result = gate(with_latency(good_window(), 10, -3.0))
    assert failed(result) == {"latency_non_negative"}
    assert result.reasons == ["1 samples have a negative latency"]


def test_error_rate_over_threshold_and_only_when_given() -> None:
    samples = good_window()
    errors = [("HTTPError 500" if i % 20 == 0 else None) for i in range(samples.height)]  # 5%
    samples = samples.with_columns(pl.Series("error", errors, dtype=pl.Utf8))
    result = gate(samples, max_error_rate=0.01)
    assert failed(result) == {"error_rate_within_threshold"}
    assert result.reasons == ["error_rate 0.05 above 0.01"]
    assert gate(samples, max_error_rate=0.1).valid
    unchecked = gate(samples, max_error_rate=None)
    assert unchecked.valid and "error_rate_within_threshold" not in {r["expectation"] for r in unchecked.rows}


def test_saturated_load_generator() -> None:
    result = gate(good_window(), loadgen_cpu_pct=95.0)
    assert failed(result) == {"loadgen_not_saturated"}
    assert result.reasons == ["load generator saturated: CPU 95% > 90%"]
    assert gate(good_window(), loadgen_cpu_pct=95.0, max_loadgen_cpu_pct=99.0).valid


def test_a_window_disturbed_by_outside_load() -> None:
    result = gate(good_window(), foreign_cores=0.8, max_foreign_cores=0.3)
    assert failed(result) == {"machine_quiet"}
    assert result.reasons == ["disturbed by outside load: 0.8 cores > 0.3"]
    assert gate(good_window(), foreign_cores=0.1, max_foreign_cores=0.3).valid


def test_five_second_gap() -> None:
    samples = good_window().filter((pl.col("ts") < 1008.0) | (pl.col("ts") >= 1013.0))
    result = gate(samples)
    assert failed(result) == {"no_gaps"}
    assert result.reasons[0].startswith("a 5.0") and result.reasons[0].endswith(f"(max {MAX_GAP_S:g} s)")


def test_samples_ending_early() -> None:
    result = gate(good_window(end=END - 5.0))
    assert failed(result) == {"samples_cover_window_end"}
    assert result.reasons == ["samples end 5.01 s before the window end"]


def test_samples_starting_late() -> None:
    result = gate(good_window(start=START + 4.0))
    assert failed(result) == {"samples_cover_window_start"}


@pytest.mark.parametrize("samples", [good_window().clear(), pl.DataFrame()], ids=["no-rows", "no-columns"])
def test_empty_frame_is_cleanly_invalid(samples: pl.DataFrame) -> None:
    result = gate(samples)
    assert not result.valid
    assert result.reasons[0] == f"too few samples: 0 < {MIN_SAMPLES}"
    assert "enough_samples" in failed(result) and "no_gaps" in failed(result)


def test_check_percentiles_monotone() -> None:
    stats = {
        "endpoints": {
            "ok": {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 2.0},
            "bad": {"p50_ms": 5.0, "p95_ms": 4.0, "p99_ms": 6.0},
            "empty": {"p50_ms": None, "p95_ms": None, "p99_ms": None},
        },
        "total": {"p50_ms": 1.0, "p95_ms": 3.0, "p99_ms": 2.5},
    }
    assert check_percentiles_monotone(stats) == [
        "bad: percentiles not monotone (p50 5.0, p95 4.0, p99 6.0)",
        "total: percentiles not monotone (p50 1.0, p95 3.0, p99 2.5)",
    ]


def test_preload_builds_the_suites_off_the_window_and_windows_wait_for_it(monkeypatch) -> None:
    from tasks.analysis import gate

    monkeypatch.setattr(gate, "_GX", {})
    monkeypatch.setattr(gate, "_PRELOAD", [])
    gate.preload()
    gate.preload()  # once per process
    assert len(gate._PRELOAD) == 1
    gate.wait_preloaded()
    assert not gate._PRELOAD[0].is_alive() and set(gate._GX) == {"context", "batch", "suites"}
