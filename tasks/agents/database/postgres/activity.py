"""How busy the target's PostgreSQL connections are, sampled from ``pg_stat_activity``.

A connection pool too small for the load shows from the database side without touching the
target: its few client connections are all busy (``active`` or ``idle in transaction``)
nearly all the time, and no further connection ever appears. ``sample_activity`` polls
``pg_stat_activity`` every SAMPLE_INTERVAL_S while the window runs (one cheap catalog read;
the agent's own connections, named ``APPLICATION_NAME``, are left out) and
``pool_saturation`` turns the samples into a finding when all connections were busy in at
least SATURATED_SHARE of the samples (after the warm-up).

Each sample with busy connections also reads the running queries' texts: their sqlcommenter
tags (tasks.agents.database.postgres.sqlcommenter) say which request each query id served.

The finding names no knob: tasks.search.optimizer maps the ``pool_saturation`` kind to the spec's
knobs whose name or description mentions a pool or connections.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import psycopg

from tasks.agents.database.postgres.sqlcommenter import TagVotes
from tasks.db.postgres import APPLICATION_NAME
from tasks.findings import Finding

SAMPLE_INTERVAL_S = 0.2
SATURATED_SHARE = 0.6  # all connections busy in at least this share of the samples
MIN_SAMPLES = 10
STEADY_SHARE = 0.8  # a pool: its connection count stays at its maximum in this share of the samples
BUSY_STATES = ("active", "idle in transaction", "idle in transaction (aborted)")
ACTIVITY_SQL = """
    SELECT count(*) AS connections,
           count(*) FILTER (WHERE state = ANY(%(busy)s)) AS busy,
           count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') AS lock_waits
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend'
      AND pid <> pg_backend_pid() AND coalesce(application_name, '') <> %(own)s
"""


TAGGED_SQL = """
    SELECT query_id, query FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND state = 'active'
      AND pid <> pg_backend_pid() AND coalesce(application_name, '') <> %(own)s AND query LIKE '%%*/%%'
"""


@dataclass
class ActivitySamples:
    """(ts, connections, busy, lock_waits) per sample; the running queries' sqlcommenter tags."""

    rows: list[tuple[float, int, int, int]] = field(default_factory=list)
    errors: int = 0
    tags: TagVotes = field(default_factory=TagVotes)

    def summary(self, since: float = 0.0) -> dict[str, Any]:
        rows = [r for r in self.rows if r[0] >= since] or self.rows
        connected = [r for r in rows if r[1] > 0]
        if not connected:
            return {"samples": len(rows), "connections_max": 0, "errors": self.errors}
        return {
            "samples": len(rows),
            "interval_s": SAMPLE_INTERVAL_S,
            "connections_max": max(r[1] for r in connected),
            "connections_median": median(r[1] for r in connected),
            "busy_mean": round(sum(r[2] for r in connected) / len(connected), 3),
            "all_busy_share": round(sum(1 for r in connected if r[2] >= r[1]) / len(rows), 4),
            # a pool keeps its connections open, busy or not; connections opened per request come
            # and go with the requests, so "all busy" holds for them by construction
            "steady_connections_share": round(
                sum(1 for r in connected if r[1] == max(x[1] for x in connected)) / len(connected), 4),
            "lock_wait_share": round(sum(1 for r in connected if r[3] > 0) / len(rows), 4),
            "errors": self.errors,
        }


def sample_activity(con: psycopg.Connection, stop: threading.Event, timeout_s: float) -> ActivitySamples:
    """Sample until ``stop`` is set or ``timeout_s`` passes; errors are counted, never raised."""
    out = ActivitySamples()
    deadline = time.monotonic() + timeout_s
    params = {"busy": list(BUSY_STATES), "own": APPLICATION_NAME}
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            row = con.execute(ACTIVITY_SQL, params).fetchone()
        except psycopg.Error:
            out.errors += 1
            if out.errors > 5:  # the connection is gone: just wait for the window's end
                stop.wait(timeout=max(deadline - time.monotonic(), 0.0))
                break
        else:
            if row is not None:
                out.rows.append((time.time(), int(row[0]), int(row[1]), int(row[2])))
                if row[1]:  # something runs: which request does it say it serves (sqlcommenter)?
                    try:
                        out.tags.add(con.execute(TAGGED_SQL, {"own": APPLICATION_NAME}).fetchall())
                    except psycopg.Error:
                        out.errors += 1
        stop.wait(timeout=SAMPLE_INTERVAL_S)
    return out


def pool_saturation(activity: dict[str, Any]) -> Finding | None:
    """A ``pool_saturation`` finding when every client connection was busy most of the window."""
    share = activity.get("all_busy_share", 0.0)
    if activity.get("samples", 0) < MIN_SAMPLES or not activity.get("connections_max") or share < SATURATED_SHARE:
        return None
    if activity.get("steady_connections_share", 1.0) < STEADY_SHARE:  # no pool: a connection per request
        return None
    connections = activity["connections_max"]
    return Finding(
        agent="database", kind="pool_saturation", location=f"connections ({connections} from the target)",
        severity="high" if share >= 0.9 else "medium",
        evidence={**activity, "source": "pg_stat_activity sampled every "
                  f"{SAMPLE_INTERVAL_S:g} s; busy = active or idle in transaction",
                  "reading": f"all {connections} client connections busy in {share:.0%} of samples: requests "
                             "that need one wait in the application's pool"},
        estimated_gain={"all_busy_share": share, "basis": "share of the window with no free connection"},
    )
