"""Time requests spent waiting for a pooled database connection, and the ``pool_saturation`` finding.

The capture (tasks.agents.database.sqlcapture) times every psycopg_pool ``getconn`` in the target (what
``pool.connection()`` uses): one record per acquisition with its wait, the pool's name, class
and ``max_size``, and the HTTP request it served. A pool too small for the load shows as
acquisitions that wait: ``summarize_pools`` gives per pool the share of acquisitions that
waited longer than WAITED_MS, the mean / p95 wait, the wait per request by endpoint, and the
share of all request time (the window's Locust samples) spent waiting. Null pools connect on
every ``getconn``, so their time is connecting, not waiting: they are left out.

``pool_saturation_finding`` reports at most one ``pool_saturation`` per window. With waits
captured it is judged on them alone (at least MIN_WAITED_SHARE of acquisitions waited and the
mean wait is at least MIN_MEAN_WAIT_MS), with the ``pg_stat_activity`` summary
(tasks.agents.database.postgres.activity) as further evidence: a pool whose connections are all busy but whose
requests do not wait is not what slows them down. Without captured waits (no psycopg_pool, or
a target started without the capture) the ``pg_stat_activity`` rule decides.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from tasks.agents.database.postgres.activity import pool_saturation
from tasks.agents.database.sql.stats import add_endpoint_column
from tasks.findings import Finding

WAITED_MS = 1.0  # an acquisition that took longer than this waited for a connection
MIN_WAITED_SHARE = 0.3  # of acquisitions that waited, for a finding
MIN_MEAN_WAIT_MS = 5.0  # mean wait over all acquisitions, for a finding
MIN_ACQUISITIONS = 20
HIGH_REQUEST_SHARE = 0.25  # severity high from this share of request time spent waiting (or any timeout)
NULL_POOL_MARK = "Null"  # NullConnectionPool / AsyncNullConnectionPool: left out
ENDPOINTS_SHOWN = 10


def _request_time_ms(samples: pl.DataFrame | None, since: float | None, until: float | None) -> float | None:
    """Sum of the window's request latencies, None without samples."""
    if samples is None or samples.is_empty() or not {"ts", "latency_ms"} <= set(samples.columns):
        return None
    inside = samples
    if since is not None:
        inside = inside.filter(pl.col("ts") >= since)
    if until is not None:
        inside = inside.filter(pl.col("ts") <= until)
    total = float(inside["latency_ms"].sum()) if not inside.is_empty() else 0.0
    return total if total > 0 else None


def _per_endpoint(waits: pl.DataFrame, names: dict[str, str]) -> dict[str, float]:
    """Locust name (or template) -> wait ms per request that acquired a connection."""
    inside = add_endpoint_column(waits).filter(pl.col("request_id").is_not_null() & pl.col("endpoint").is_not_null())
    if inside.is_empty():
        return {}
    named = inside.with_columns(pl.col("endpoint").replace(names).alias("endpoint"))
    per = (named.group_by("endpoint")
           .agg((pl.col("wait_ms").sum() / pl.col("request_id").n_unique()).alias("ms"))
           .sort("ms", descending=True).head(ENDPOINTS_SHOWN))
    return {e: round(ms, 3) for e, ms in per.iter_rows()}


def summarize_pools(waits: pl.DataFrame, samples: pl.DataFrame | None = None, *, names: dict[str, str] | None = None,
                    since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
    """Per pool (most total wait first): acquisitions and how long they waited (see module docstring).

    ``waits`` is tasks.agents.database.sqlcapture.read_pool_waits' frame for the window ``[since, until]``; ``samples``
    the window's requests (``ts``, ``latency_ms``); ``names`` maps path templates to Locust names.
    """
    waits = waits.filter(~pl.col("pool_class").str.contains(NULL_POOL_MARK))
    if waits.is_empty():
        return []
    request_ms = _request_time_ms(samples, since, until)
    stats = waits.group_by("pool", "pool_class", maintain_order=True).agg(
        pl.len().alias("acquisitions"),
        (pl.col("wait_ms") > WAITED_MS).mean().round(4).alias("waited_share"),
        pl.col("wait_ms").mean().round(3).alias("mean_wait_ms"),
        pl.col("wait_ms").quantile(0.95, interpolation="linear").round(3).alias("p95_wait_ms"),
        pl.col("wait_ms").max().round(3).alias("max_wait_ms"),
        pl.col("wait_ms").sum().round(3).alias("total_wait_ms"),
        (~pl.col("ok").fill_null(True)).sum().alias("failed"),
        pl.col("max_size").max(),
    )
    out = []
    for row in stats.iter_rows(named=True):
        mine = waits.filter(pl.col("pool").eq_missing(row["pool"]) & (pl.col("pool_class") == row["pool_class"]))
        share = None if request_ms is None else round(min(row["total_wait_ms"] / request_ms, 1.0), 4)
        out.append({**row, "wait_ms_per_request": _per_endpoint(mine, names or {}),
                    "request_time_ms": None if request_ms is None else round(request_ms, 3),
                    "share_of_request_time": share})
    return sorted(out, key=lambda p: p["total_wait_ms"], reverse=True)


def is_saturated(pool: dict[str, Any]) -> bool:
    """Whether the pool's waits are material: enough acquisitions, often waiting, long enough on average."""
    return (pool["acquisitions"] >= MIN_ACQUISITIONS and pool["waited_share"] >= MIN_WAITED_SHARE
            and pool["mean_wait_ms"] >= MIN_MEAN_WAIT_MS)


def pool_saturation_finding(pools: list[dict[str, Any]], activity: dict[str, Any]) -> Finding | None:
    """At most one ``pool_saturation``: from captured waits when there are any, else from ``pg_stat_activity``."""
    if not pools:
        return pool_saturation(activity)
    worst = pools[0]
    if not is_saturated(worst):
        return None
    share = worst["share_of_request_time"]
    high = (share is not None and share >= HIGH_REQUEST_SHARE) or worst["failed"] > 0
    size = f"max_size {worst['max_size']}" if worst["max_size"] is not None else "its size"
    evidence = {
        **worst, "waited_over_ms": WAITED_MS, "other_pools": pools[1:], "pg_stat_activity": activity,
        "source": "psycopg_pool getconn timed in the target (one record per acquisition)",
        "reading": f"{worst['waited_share']:.0%} of {worst['acquisitions']} acquisitions waited for a connection "
                   f"(mean {worst['mean_wait_ms']:.3g} ms, p95 {worst['p95_wait_ms']:.3g} ms): the pool "
                   f"({size}) is smaller than the load needs",
    }
    return Finding(
        agent="database", kind="pool_saturation", location=f"psycopg_pool:{worst['pool_class']}",
        severity="high" if high else "medium", evidence=evidence,
        estimated_gain={"share_of_request_time": share, "mean_wait_ms": worst["mean_wait_ms"],
                        "basis": "time requests spent waiting for a pooled connection (removed at best "
                                 "by a pool big enough, if the database keeps up)"},
    )
