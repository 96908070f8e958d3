"""The window under load, shown while it runs: samples read as the listener's CSV grows, and the
run's live row in the store rewritten until the window ends."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tasks.live import LiveWindow
from tasks.load.live import LiveSamples
from tasks.store import Store

HEADER = "ts,endpoint,method,latency_ms,status,bytes,error\n"


def lines(ts: np.ndarray, latency: np.ndarray, error_every: int = 0) -> str:
    return "".join(f"{t},home,GET,{lat},{500 if error_every and i % error_every == 0 else 200},10,"
                   f"{'HTTP 500' if error_every and i % error_every == 0 else ''}\n"
                   for i, (t, lat) in enumerate(zip(ts, latency, strict=True)))


def test_samples_are_read_as_the_csv_grows_whole_lines_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ts, latency = 1000 + np.sort(rng.uniform(0, 10, 900)), rng.lognormal(2, 0.5, 900)
    text = HEADER + lines(ts, latency, error_every=100)
    path = tmp_path / "baseline-1.samples.csv"
    live = LiveSamples(tmp_path, started=1000.0, warmup_s=2.0)
    cut = len(HEADER) + len(lines(ts[:300], latency[:300], error_every=100)) + 7  # the file ends mid-line, as a flush may leave it
    path.write_text(text[:cut])
    assert live.read() == 300  # the partial line waits for the next read
    path.write_text(text)
    assert live.read() == 600 and live.read() == 0
    progress = live.progress(now=1010.0)
    measured = latency[ts >= ts[0] + 2.0]
    assert progress["requests"] == 900 and progress["errors"] == 9
    assert progress["elapsed_s"] == pytest.approx(1010.0 - ts[0], abs=0.01)  # since the first request
    assert progress["p50_ms"] == pytest.approx(np.percentile(measured, 50), rel=1e-3)
    assert progress["p95_ms"] == pytest.approx(np.percentile(measured, 95), rel=1e-3)
    assert progress["rps"] == pytest.approx(900 / (1010.0 - ts[0]), rel=1e-2)


def test_no_request_yet_is_progress_without_percentiles(tmp_path: Path) -> None:
    (tmp_path / "w.samples.csv").write_text(HEADER)
    live = LiveSamples(tmp_path, started=time.time(), warmup_s=1.0)
    assert live.read() == 0
    assert live.progress() | {"elapsed_s": 0} == {"elapsed_s": 0, "requests": 0, "errors": 0, "rps": None,
                                                  "p50_ms": None, "p95_ms": None}


def test_live_window_rewrites_the_runs_row_until_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFAGENTS_LIVE_INTERVAL_S", "0.1")
    store = Store(tmp_path / "store.duckdb")
    folder = tmp_path / "baseline-1-1"
    folder.mkdir()
    csv = folder / "baseline-1.samples.csv"
    csv.write_text(HEADER)
    seen = []
    with LiveWindow(store, "r1", "baseline-1", 1, folder, planned_s=3.0, warmup_s=0.0) as live:
        for k in range(5):
            with csv.open("a") as fh:
                fh.write(lines(np.full(50, time.time()), np.full(50, 5.0 + k)))
            time.sleep(0.25)
            seen.extend(r["requests"] for r in store.live_windows("r1"))
    (row,) = store.live_windows("r1")
    assert row["done"] and row["requests"] == 250 and row["label"] == "baseline-1" and row["planned_s"] == 3.0
    assert row["p50_ms"] == pytest.approx(7.0) and row["elapsed_s"] >= 0.9
    assert len(set(seen)) >= 3 and seen == sorted(seen)  # rewritten while the load ran
    assert live.updates >= 5 and live.skipped == 0


def test_live_progress_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFAGENTS_LIVE", "0")
    store = Store(tmp_path / "store.duckdb")
    with LiveWindow(store, "r1", "baseline-1", 1, tmp_path, planned_s=1.0, warmup_s=0.0):
        time.sleep(0.1)
    assert store.live_windows() == []
