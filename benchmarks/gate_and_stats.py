"""What the per-window bookkeeping costs: the gate, the statistics, the bootstrap, the store.

    .venv/bin/python benchmarks/gate_and_stats.py [--repeats 3]

On synthetic sample frames shaped like the Locust listener's (SAMPLE_SCHEMA: 9 endpoints,
log-normal latencies, 0.5% errors, spread over a 20 s window) of 20k and 200k rows, times

- the Great Expectations gate (``tasks.analysis.gate.validate_window``): the first call apart (it
  imports great_expectations and builds the context), then warm calls;
- ``tasks.analysis.stats.window_stats`` (per-endpoint and total percentiles);
- ``tasks.analysis.compare.bootstrap_ratio_ci`` (p95 ratio of two such frames, 2000 resamples);

and prints each one's 200k/20k ratio and its share of a 20 s window. Then it inserts 10k
sample rows into a temporary DuckDB store with ``Store.insert_frame`` (Arrow) and with a
plain ``executemany`` and prints how many times slower the row-by-row insert is.
Times are medians of ``--repeats`` runs (wall clock, time.perf_counter).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.analysis.compare import bootstrap_ratio_ci
from tasks.analysis.gate import validate_window
from tasks.analysis.stats import window_stats
from tasks.load.samples import SAMPLE_SCHEMA
from tasks.store import Store

SIZES = (20_000, 200_000)
INSERT_ROWS = 10_000
REPEATS = 3
WINDOW_S = 20.0
WINDOW_START = 1_700_000_000.0
ENDPOINTS = ("home", "static", "catalog", "search", "product", "product_page", "customer_orders",
             "cart_add", "checkout")
ERROR_SHARE = 0.005


def make_samples(rows: int, seed: int, slower: float = 1.0) -> pl.DataFrame:
    """A samples frame like one window's: sorted timestamps, skewed latencies, a few errors."""
    rng = np.random.default_rng(seed)
    failed = rng.random(rows) < ERROR_SHARE
    latency = rng.lognormal(mean=np.log(8.0), sigma=0.8, size=rows) * slower
    return pl.DataFrame({
        "ts": np.sort(rng.uniform(WINDOW_START, WINDOW_START + WINDOW_S, rows)),
        "endpoint": rng.choice(ENDPOINTS, rows),
        "method": "GET",
        "latency_ms": latency,
        "status": np.where(failed, 500, 200).astype(np.int32),
        "bytes": rng.integers(200, 40_000, rows),
        "error": pl.Series(np.where(failed, "HTTP 500", "")).replace("", None),
    }, schema=SAMPLE_SCHEMA)


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gate(samples: pl.DataFrame) -> Any:
    result = validate_window(samples, window_start=WINDOW_START, window_end=WINDOW_START + WINDOW_S,
                             loadgen_cpu_pct=40.0, max_error_rate=0.01)
    if not result.valid:  # the frames are built to pass: a rejection means the benchmark is wrong
        raise SystemExit(f"the gate rejected a synthetic window: {result.reasons}")
    return result


def time_analysis(repeats: int) -> dict[str, dict[int, float]]:
    t0 = time.perf_counter()
    gate(make_samples(SIZES[0], seed=99))
    print(f"gate, first call (imports great_expectations, builds the context): {time.perf_counter() - t0:.2f} s")
    out: dict[str, dict[int, float]] = {"gate (GX)": {}, "window_stats": {}, "bootstrap_ratio_ci": {}}
    for rows in SIZES:
        before, after = make_samples(rows, seed=1), make_samples(rows, seed=2, slower=0.9)
        a, b = before["latency_ms"].to_numpy(), after["latency_ms"].to_numpy()
        out["gate (GX)"][rows] = median_time(lambda s=before: gate(s), repeats)
        out["window_stats"][rows] = median_time(lambda s=before: window_stats(s, WINDOW_S), repeats)
        out["bootstrap_ratio_ci"][rows] = median_time(lambda x=a, y=b: bootstrap_ratio_ci(x, y), repeats)
    return out


def report_analysis(times: dict[str, dict[int, float]]) -> None:
    small, large = SIZES
    print(f"{'operation':<20} {f'{small // 1000}k rows':>10} {f'{large // 1000}k rows':>10} "
          f"{'200k/20k':>9} {'share of a 20 s window (20k / 200k)':>38}")
    for name, by_size in times.items():
        t_small, t_large = by_size[small], by_size[large]
        print(f"{name:<20} {1000 * t_small:8.1f}ms {1000 * t_large:8.1f}ms {t_large / t_small:8.1f}x "
              f"{100 * t_small / WINDOW_S:17.2f}% / {100 * t_large / WINDOW_S:.2f}%")
    gx, stats = times["gate (GX)"], times["window_stats"]
    print(f"gate / window_stats: {gx[small] / stats[small]:.0f}x at 20k rows, {gx[large] / stats[large]:.0f}x at 200k rows")


def time_inserts(repeats: int) -> tuple[float, float]:
    frame = make_samples(INSERT_ROWS, seed=3).with_columns(pl.lit("bench").alias("window_id"))
    rows = frame.rows()
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    marks = ", ".join("?" for _ in frame.columns)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp, Store(Path(tmp) / "bench.duckdb") as store:

        def bulk() -> None:
            with store.transaction():
                store.insert_frame("samples", frame)

        def row_by_row() -> None:
            with store.transaction() as con:
                con.executemany(f"INSERT INTO samples ({cols}) VALUES ({marks})", rows)

        t_bulk = median_time(bulk, repeats)
        t_rows = median_time(row_by_row, 1)  # slow: once is enough to see the order of magnitude
        count = store.rows("SELECT count(*) AS n FROM samples")[0]["n"]
    expected = INSERT_ROWS * (repeats + 1)
    if count != expected:
        raise SystemExit(f"the store holds {count} rows, expected {expected}")
    return t_bulk, t_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=REPEATS)
    args = p.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"gate_and_stats: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average at start {load}; medians of {args.repeats}")
    started = time.monotonic()
    report_analysis(time_analysis(args.repeats))
    t_bulk, t_rows = time_inserts(args.repeats)
    print(f"store insert of {INSERT_ROWS} sample rows: insert_frame {1000 * t_bulk:.1f} ms, "
          f"executemany {1000 * t_rows:.0f} ms -> executemany is {t_rows / t_bulk:.0f}x slower")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"wall {time.monotonic() - started:.0f} s; load average at end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
