"""Which regime a state was measured in: is the target saturated under the closed-loop load?

Locust users form a closed loop: each waits for its response, thinks, then sends the next.
By Little's law the requests in flight are L = throughput x mean latency; when L is most of
the users, the users spend their time waiting in the target's queue and latency is mostly
queueing (about users / throughput), not service. Then p95 follows whatever throughput does
with a window's luck and a few slow requests hold everyone up (the enterprise API: p95
1179-2492 ms at 17-23 rps over five A/A windows), while throughput is steady. Saturated
states are judged on throughput; the others on latency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

SATURATED_BUSY = 0.6  # users waiting on a response this share of the time: a saturated target


def busy_share(samples: pl.DataFrame, duration_s: float, users: int) -> float:
    """Little's law: the share of the users' time spent waiting for a response."""
    if samples.height == 0 or duration_s <= 0 or users <= 0:
        return 0.0
    latencies = samples.get_column("latency_ms").drop_nulls().to_numpy()
    mean_s = float(latencies.mean()) / 1000.0 if latencies.size else 0.0
    return samples.height / duration_s * mean_s / users


def regime(windows: Sequence[pl.DataFrame], durations: Sequence[float], users: int) -> tuple[str, float]:
    """("saturated" | "latency", the median busy share) over a state's windows."""
    shares = [busy_share(w, d, users) for w, d in zip(windows, durations, strict=True)]
    share = float(np.median(shares)) if shares else 0.0
    return ("saturated" if share >= SATURATED_BUSY else "latency"), round(share, 3)
