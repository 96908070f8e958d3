"""Pool saturation from pg_stat_activity, against a real PostgreSQL cluster.

Two client connections stand in for an application pool of two: kept busy back to back they
are a saturated pool; busy a fifth of the time they are not.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tasks.agents.database.postgres.activity import pool_saturation, sample_activity
from tasks.db.postgres import connect

pytestmark = pytest.mark.postgres

SAMPLE_FOR_S = 3.0


def drive_clients(dsn: str, stop: threading.Event, busy_s: float, idle_s: float, clients: int = 2) -> list[threading.Thread]:
    def client() -> None:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as con:
            while not stop.is_set():
                con.execute("SELECT pg_sleep(%s)", [busy_s])
                stop.wait(idle_s)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads


def observe(dsn: str, busy_s: float, idle_s: float) -> dict:
    stop, done = threading.Event(), threading.Event()
    threads = drive_clients(dsn, stop, busy_s, idle_s)
    try:
        time.sleep(0.5)  # both clients connected
        with connect(dsn) as con:
            timer = threading.Timer(SAMPLE_FOR_S, done.set)
            timer.start()
            samples = sample_activity(con, done, timeout_s=SAMPLE_FOR_S + 5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    return samples.summary()


def test_a_saturated_pool_is_a_finding_and_an_idle_one_is_not(pg_cluster: str) -> None:
    saturated = observe(pg_cluster, busy_s=0.25, idle_s=0.0)
    assert saturated["connections_max"] == 2  # the sampler's own connection is left out
    assert saturated["samples"] >= 10 and saturated["all_busy_share"] >= 0.8
    finding = pool_saturation(saturated)
    assert finding is not None and finding.kind == "pool_saturation"
    assert finding.location == "connections (2 from the target)"
    assert finding.evidence["all_busy_share"] == saturated["all_busy_share"]

    relaxed = observe(pg_cluster, busy_s=0.05, idle_s=0.2)
    assert relaxed["connections_max"] == 2 and relaxed["all_busy_share"] < 0.3
    assert pool_saturation(relaxed) is None


def test_pool_saturation_points_the_optimizer_at_pool_knobs() -> None:
    from tasks.search.optimizer import knob_candidates
    from tasks.spec import TargetSpec

    spec = TargetSpec.model_validate({
        "name": "api", "base_url": "http://127.0.0.1:1", "load": {"users": 1, "duration_s": 5, "endpoints": [{"name": "home", "path": "/"}]},
        "knobs": {"pool_size": {"type": "int", "low": 1, "high": 16, "default": 2, "apply": {"env": "POOL"},
                                "description": "database connections per worker"},
                  "gzip": {"type": "bool", "default": False, "apply": {"env": "GZIP"}}},
    })
    finding = pool_saturation({"samples": 50, "connections_max": 2, "all_busy_share": 0.95})
    assert finding is not None
    gains = {c.params["knob"]: c.expected_gain for c in knob_candidates(spec, {}, [finding])}
    assert gains["pool_size"] > gains["gzip"]


def test_connections_opened_per_request_are_no_saturated_pool() -> None:
    from tasks.agents.database.postgres.activity import ActivitySamples

    per_request = ActivitySamples(rows=[(float(i), n, n, 0) for i, n in enumerate([1, 3, 2, 4, 1, 2, 3, 1, 4, 2, 2, 3])])
    summary = per_request.summary()
    assert summary["all_busy_share"] == 1.0 and summary["steady_connections_share"] < 0.8
    assert pool_saturation(summary) is None  # every connection busy, by construction: not a pool
    pool = ActivitySamples(rows=[(float(i), 2, 2, 0) for i in range(12)])
    assert pool_saturation(pool.summary()) is not None
