"""Per-request samples: the one frame schema every consumer codes against.

The Locust listener (``listener.py``, which runs inside Locust and so cannot import this
module) writes a CSV with exactly these columns, in this order. ``error`` is null when Locust
counted the request as a success; otherwise the exception text, or ``HTTP <status>`` for a
4xx/5xx. ``status`` is 0 when no HTTP response arrived (refused connection, timeout ...).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl

SAMPLE_SCHEMA: dict[str, Any] = {
    "ts": pl.Float64,  # epoch seconds at request start
    "endpoint": pl.Utf8,  # the Locust request name
    "method": pl.Utf8,
    "latency_ms": pl.Float64,
    "status": pl.Int32,
    "bytes": pl.Int64,
    "error": pl.Utf8,  # nullable
}
SAMPLE_COLUMNS = tuple(SAMPLE_SCHEMA)


def empty_samples() -> pl.DataFrame:
    return pl.DataFrame(schema=SAMPLE_SCHEMA)


def read_samples(path: Path | str) -> pl.DataFrame:
    """Read a listener CSV; a missing or empty file is an empty frame.

    A file cut short by a killed load generator loses only its partial last line.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return empty_samples()
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    if data.count(b"\n") <= 1:  # header only
        return empty_samples()
    return pl.read_csv(io.BytesIO(data), schema=SAMPLE_SCHEMA, has_header=True)
