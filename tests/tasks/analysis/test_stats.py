from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tasks.analysis.stats import TOTAL_ENDPOINT, endpoint_stats_frame, window_stats, worst_endpoint
from tasks.errors import PerfagentsError
from tasks.store import Store


def make_samples(rows: list[tuple[str, float | None, str | None]], t0: float = 1000.0) -> pl.DataFrame:
    """Samples in the loader's schema from (endpoint, latency_ms, error) tuples."""
    n = len(rows)
    return pl.DataFrame(
        {
            "ts": [t0 + 0.01 * i for i in range(n)],
            "endpoint": [r[0] for r in rows],
            "method": ["GET"] * n,
            "latency_ms": [r[1] for r in rows],
            "status": [500 if r[2] else 200 for r in rows],
            "bytes": [100 + i for i in range(n)],
            "error": [r[2] for r in rows],
        },
        schema={"ts": pl.Float64, "endpoint": pl.Utf8, "method": pl.Utf8, "latency_ms": pl.Float64,
                "status": pl.Int32, "bytes": pl.Int64, "error": pl.Utf8},
    )


@pytest.fixture
def samples() -> pl.DataFrame:
    catalog = [("catalog", float(v), None) for v in range(1, 101)]  # latencies 1..100 ms
    checkout = [("checkout", 7.0, "HTTPError 500" if i < 2 else None) for i in range(10)]
    return make_samples(catalog + checkout)


def test_window_stats_known_percentiles(samples: pl.DataFrame) -> None:
    stats = window_stats(samples, duration_s=10.0)
    catalog = stats["endpoints"]["catalog"]
    assert catalog == {"requests": 100, "rps": 10.0, "p50_ms": 50.5, "p95_ms": 95.05,
                       "p99_ms": 99.01, "error_rate": 0.0, "mean_ms": 50.5}
    checkout = stats["endpoints"]["checkout"]
    assert checkout["requests"] == 10 and checkout["rps"] == 1.0
    assert checkout["p50_ms"] == checkout["p99_ms"] == 7.0
    assert checkout["error_rate"] == pytest.approx(0.2)
    everything = np.array(list(range(1, 101)) + [7.0] * 10, dtype=float)
    total = stats["total"]
    assert total["requests"] == 110 and total["rps"] == 11.0
    assert total["p95_ms"] == pytest.approx(np.quantile(everything, 0.95), abs=1e-3)
    assert total["p99_ms"] == pytest.approx(np.quantile(everything, 0.99), abs=1e-3)
    assert total["error_rate"] == pytest.approx(2 / 110, abs=1e-6)
    assert set(stats) == {"endpoints", "total"}


def test_null_latency_counts_as_request_but_not_in_percentiles() -> None:
    stats = window_stats(make_samples([("a", 10.0, None), ("a", None, "ConnectionError"), ("a", 20.0, None)]), 1.0)
    entry = stats["endpoints"]["a"]
    assert entry["requests"] == 3 and entry["p50_ms"] == 15.0 and entry["mean_ms"] == 15.0
    assert entry["error_rate"] == pytest.approx(1 / 3, abs=1e-6)


def test_empty_window_has_no_endpoints_and_null_latencies(samples: pl.DataFrame) -> None:
    stats = window_stats(samples.clear(), 5.0)
    assert stats["endpoints"] == {}
    assert stats["total"]["requests"] == 0 and stats["total"]["rps"] == 0.0
    assert stats["total"]["p95_ms"] is None and stats["total"]["error_rate"] == 0.0
    with pytest.raises(PerfagentsError, match="p95_ms"):
        worst_endpoint(stats)


def test_non_positive_duration_is_refused(samples: pl.DataFrame) -> None:
    with pytest.raises(PerfagentsError, match="duration"):
        window_stats(samples, 0.0)


def test_endpoint_stats_frame_fits_the_store(samples: pl.DataFrame, tmp_path) -> None:
    frame = endpoint_stats_frame(samples, 10.0, "w1")
    assert frame["endpoint"].to_list() == ["catalog", "checkout", TOTAL_ENDPOINT]
    with Store(tmp_path / "s.duckdb") as store:
        table_cols = [r["column_name"] for r in store.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'endpoint_stats' "
            "ORDER BY ordinal_position")]
        assert frame.columns == table_cols
        store.insert_frame("endpoint_stats", frame)
        back = store.rows("SELECT * FROM endpoint_stats WHERE endpoint = ?", [TOTAL_ENDPOINT])
    assert back[0]["requests"] == 110 and back[0]["window_id"] == "w1"
    catalog = frame.filter(pl.col("endpoint") == "catalog").row(0, named=True)
    assert catalog["bytes_mean"] == pytest.approx(np.mean(range(100, 200)))
    assert catalog["p95_ms"] == window_stats(samples, 10.0)["endpoints"]["catalog"]["p95_ms"]
    latencies = samples.filter(pl.col("endpoint") == "catalog")["latency_ms"].drop_nulls().to_numpy()
    assert catalog["gmean_ms"] == pytest.approx(np.exp(np.log(np.maximum(latencies, 0.001)).mean()), abs=1e-3)


def test_worst_endpoint_by_metric(samples: pl.DataFrame) -> None:
    stats = window_stats(samples, 10.0)
    assert worst_endpoint(stats) == "catalog"
    assert worst_endpoint(stats, "error_rate") == "checkout"
    assert worst_endpoint(stats, "rps") == "checkout"  # fewest requests per second
