"""The window under load, as far as it has gone, read from the listener's CSVs as they grow.

The listener (listener.py) flushes its samples at least every second. ``LiveSamples`` reads
what each samples CSV of a window's folder (one per Locust process) gained since the last call,
whole lines only, and keeps the timestamps and latencies, so ``progress()`` gives the requests,
errors, rate and p50/p95 so far without reading any byte twice. The percentiles leave out the
planned warm-up once requests past it exist (the window's own measured part is decided when it
ends: tasks/load/steady.py).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.load.samples import SAMPLE_SCHEMA

SAMPLES_GLOB = "*.samples*.csv"  # runner.py names it <label>.samples.csv; several processes add their pid


class LiveSamples:
    """Incremental reader of one window's sample CSVs (``folder``), opened at epoch ``started``."""

    def __init__(self, folder: Path, *, started: float, warmup_s: float) -> None:
        self.folder = Path(folder)
        self.started = started
        self.warmup_s = warmup_s
        self.errors = 0
        self._offsets: dict[Path, int] = {}
        self._ts: list[np.ndarray] = []
        self._latency: list[np.ndarray] = []

    @property
    def requests(self) -> int:
        return sum(len(part) for part in self._ts)

    def read(self) -> int:
        """Take in what the CSVs gained since the last call; returns the number of new requests."""
        added = 0
        for path in sorted(self.folder.glob(SAMPLES_GLOB)):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except OSError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self._offsets[path] = offset + end + 1
            frame = pl.read_csv(io.BytesIO(data[: end + 1]), schema=SAMPLE_SCHEMA, has_header=offset == 0)
            if frame.height == 0:
                continue
            self._ts.append(frame["ts"].to_numpy())
            self._latency.append(frame["latency_ms"].fill_null(0.0).to_numpy())
            self.errors += int(frame["error"].is_not_null().sum())
            added += frame.height
        return added

    def progress(self, now: float | None = None) -> dict[str, Any]:
        """elapsed_s and rps since the first request (0 and None before it: Locust is starting),
        requests, errors, p50_ms and p95_ms so far (None before the first request)."""
        now = time.time() if now is None else now
        out: dict[str, Any] = {"elapsed_s": 0.0, "requests": self.requests, "errors": int(self.errors),
                               "rps": None, "p50_ms": None, "p95_ms": None}
        if not self._ts:
            return out  # Locust is starting
        ts, latency = np.concatenate(self._ts), np.concatenate(self._latency)
        first = float(ts.min())
        out["elapsed_s"] = round(max(0.0, now - first), 2)  # the load's own clock: Locust's start-up apart
        out["rps"] = round(len(ts) / max(now - first, 1e-3), 2)
        measured = latency[ts >= first + self.warmup_s]
        chosen = measured if len(measured) else latency
        p50, p95 = np.percentile(chosen, [50, 95])
        out["p50_ms"], out["p95_ms"] = round(float(p50), 3), round(float(p95), 3)
        return out
