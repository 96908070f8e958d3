"""Connection-pool waits and call sites on PostgreSQL: a real cluster, a real psycopg_pool app under uvicorn.

The app (pg_pool_app.py) is started with the capture injected, hit by CLIENTS concurrent
clients on a ~20 ms query while the real database agent profiles the window: with a pool of one
connection the requests queue in ``getconn`` (a ``pool_saturation`` finding), with a pool as
big as the concurrency they do not.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from tasks.agents.base import AgentContext
from tasks.agents.database.postgres.pool_waits import (
    MIN_ACQUISITIONS,
    pool_saturation_finding,
    summarize_pools,
)
from tasks.agents.database.sqlcapture import (
    ENV_VAR,
    INJECT_DIR,
    read_pool_waits,
    read_statements,
    sql_log_dir,
)
from tasks.findings import Finding
from tasks.spec import TargetSpec

pytestmark = [pytest.mark.timeout(120), pytest.mark.postgres]

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("perfagents_test_pg_pool_app", HERE / "pg_pool_app.py")
pool_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pool_app)
_support_spec = importlib.util.spec_from_file_location("perfagents_pg_test_support", HERE / "pg_test_support.py")
support = importlib.util.module_from_spec(_support_spec)
_support_spec.loader.exec_module(support)
create_database = support.create_database

CLIENTS = 8
ROUNDS = 5  # /slow requests per client
N_PLUS_ONE = 12
SEQUENTIAL = 3  # rounds of the other requests, one at a time
PROFILE_JOIN_S = 60
SPEC_ENDPOINTS = [{"name": "slow", "path": "/slow"}, {"name": "labels", "path": "/labels/{int:1:50}"},
                  {"name": "count", "path": "/count"}, {"name": "crunch", "path": "/crunch"}]


async def _drive(base: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def get(name: str, path: str) -> None:
            ts, t0 = time.time(), time.perf_counter()
            response = await client.get(path)
            assert response.status_code == 200, response.text
            rows.append({"ts": ts, "endpoint": name, "method": "GET", "latency_ms": (time.perf_counter() - t0) * 1000})

        async def shopper() -> None:
            for _ in range(ROUNDS):
                await get("slow", "/slow")

        for _ in range(SEQUENTIAL):  # no wait, whatever the pool size
            await get("labels", f"/labels/{N_PLUS_ONE}")
            await get("count", "/count")
            await get("crunch", "/crunch")
        await asyncio.gather(*(shopper() for _ in range(CLIENTS)))
    return rows


@dataclass
class Window:
    observed: dict[str, Any]
    findings: list[Finding]
    samples: pl.DataFrame
    waits: pl.DataFrame
    log_dir: Path

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]


def profile_window(cluster_dsn: str, workdir: Path, pool_size: int) -> Window:
    dsn = create_database(cluster_dsn, f"pool_app_{pool_size}")
    pool_app.seed(dsn)
    log_dir = sql_log_dir(workdir)
    spec = TargetSpec(name="pool-app", base_url="http://127.0.0.1:1", database={"url": dsn, "allow_ddl": False},
                      load={"warmup_s": 0, "endpoints": SPEC_ENDPOINTS})
    ctx = AgentContext(spec=spec, base_url=spec.base_url, workdir=workdir, window_s=10, database_url=dsn)
    app_env = {"APP_DSN": dsn, "APP_POOL_SIZE": str(pool_size)}
    agent, observed, samples = support.profile_while_driving(
        ctx, "pg_pool_app:app", app_env, log_dir, workdir / "app.log",
        lambda base: pl.DataFrame(asyncio.run(_drive(base))), join_s=PROFILE_JOIN_S)
    since, until = observed["window"]
    return Window(observed, agent.findings(ctx, observed, samples), samples,
                  read_pool_waits(log_dir, since, until), log_dir)


@pytest.fixture(scope="module")
def saturated(pg_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Window:
    return profile_window(pg_cluster, tmp_path_factory.mktemp("pool1"), 1)


@pytest.fixture(scope="module")
def roomy(pg_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Window:
    return profile_window(pg_cluster, tmp_path_factory.mktemp("pool8"), CLIENTS)


def test_every_acquisition_is_timed_with_its_request(saturated):
    waits = saturated.waits
    slow = waits.filter(pl.col("path") == "/slow")
    assert slow.height == CLIENTS * ROUNDS and slow["request_id"].n_unique() == CLIENTS * ROUNDS
    assert set(waits["pool_class"].to_list()) == {"AsyncConnectionPool"} and set(waits["pool"].to_list()) == {"pool-app"}
    assert waits["max_size"].unique().to_list() == [1] and waits["ok"].all()
    labels = waits.filter(pl.col("route") == "/labels/{n:int}")  # one acquisition per query of the N+1
    assert labels.height == SEQUENTIAL * (1 + N_PLUS_ONE)
    # a request queued behind others waits for their queries: far longer than a free connection takes
    assert slow["wait_ms"].median() > 5 * labels["wait_ms"].median()


def test_a_pool_of_one_under_eight_clients_is_saturated(saturated):
    (found,) = saturated.of_kind("pool_saturation")
    ev = found.evidence
    assert found.location == "psycopg_pool:AsyncConnectionPool" and ev["pool"] == "pool-app" and ev["max_size"] == 1
    # the sequential requests (45 acquisitions) never wait; most of the concurrent ones (40) do
    assert ev["acquisitions"] == CLIENTS * ROUNDS + SEQUENTIAL * (3 + N_PLUS_ONE) and ev["waited_share"] >= 0.35
    assert ev["mean_wait_ms"] >= 2 * pool_app.SLEEP_S * 1000 and ev["p95_wait_ms"] >= ev["mean_wait_ms"]
    assert set(ev["wait_ms_per_request"]) >= {"slow", "labels"}  # Locust names, mapped from the path templates
    assert ev["wait_ms_per_request"]["slow"] > ev["wait_ms_per_request"]["labels"] / N_PLUS_ONE
    share = found.estimated_gain["share_of_request_time"]
    assert 0.2 < share <= 1 and share == ev["share_of_request_time"]
    assert "samples" in ev["pg_stat_activity"]  # the database-side view rides along
    json.dumps(found.to_dict())


def test_a_pool_as_big_as_the_load_is_not(roomy):
    assert roomy.of_kind("pool_saturation") == []
    (pool,) = summarize_pools(roomy.waits)
    assert pool["max_size"] == CLIENTS and pool["acquisitions"] >= CLIENTS * ROUNDS
    assert pool["waited_share"] < 0.3


def test_wait_based_verdict_overrides_pg_stat_activity(roomy, saturated):
    busy = {"samples": 50, "connections_max": CLIENTS, "all_busy_share": 0.95}  # what pg_stat_activity could say
    assert pool_saturation_finding(summarize_pools(roomy.waits), busy) is None
    assert pool_saturation_finding([], busy) is not None  # no waits captured: pg_stat_activity decides
    few = summarize_pools(saturated.waits.head(MIN_ACQUISITIONS - 1))
    assert pool_saturation_finding(few, {}) is None


def test_n_plus_one_through_a_wrapper_is_located_at_the_looping_function(saturated):
    (found,) = saturated.of_kind("n_plus_one")
    assert found.location == "pg_pool_app:load_labels_n_plus_one" and found.endpoint == "labels"
    assert found.evidence["stack"][0].startswith("pg_pool_app:Store.fetch:")  # the wrapper, shared, skipped
    assert found.evidence["count_per_request"]["median"] == N_PLUS_ONE


def test_slow_query_without_a_table_is_located_at_its_call_site(saturated):
    slow = [f for f in saturated.of_kind("slow_query") if "md5" in f.evidence["statement"]]
    assert slow, [(f.kind, f.location) for f in saturated.findings]
    assert slow[0].location == "pg_pool_app:crunch" and slow[0].evidence["call_site"] == "pg_pool_app:crunch"
    assert all(f.location != "sql" for f in saturated.findings)


def test_pool_waits_stay_out_of_the_statements(saturated):
    frame = read_statements(saturated.log_dir)
    assert not frame.is_empty() and not frame["sql"].str.contains("pool wait").any()
    assert list(saturated.log_dir.glob("pool-*.jsonl"))


SYNC_SCRIPT = """
import sys, threading
from psycopg_pool import ConnectionPool, NullConnectionPool

dsn = sys.argv[1]
with ConnectionPool(dsn, min_size=1, max_size=1, open=True, name="sync-pool") as pool:
    pool.wait()

    def use():
        with pool.connection() as con:
            con.execute("SELECT pg_sleep(0.05)")

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
with NullConnectionPool(dsn, max_size=1, name="null-pool") as null:
    conn = null.getconn()
    null.putconn(conn)
"""


def test_sync_and_null_pools_are_timed_and_null_pools_left_out(pg_cluster, tmp_path):
    log_dir = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", ENV_VAR)}
    env.update(PYTHONPATH=str(INJECT_DIR), **{ENV_VAR: str(log_dir)})
    done = subprocess.run([sys.executable, "-c", SYNC_SCRIPT, pg_cluster], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    waits = read_pool_waits(log_dir)
    sync = waits.filter(pl.col("pool") == "sync-pool")
    assert sync.height == 3 and sync["pool_class"].unique().to_list() == ["ConnectionPool"]
    assert sync["request_id"].is_null().all()  # no HTTP request in context
    # one got the connection at once, the last waited for both others' 50 ms queries
    assert sorted(sync["wait_ms"].to_list())[-1] > 20 * sorted(sync["wait_ms"].to_list())[0]
    assert waits.filter(pl.col("pool") == "null-pool")["pool_class"].to_list() == ["NullConnectionPool"]
    assert [p["pool"] for p in summarize_pools(waits)] == ["sync-pool"]

