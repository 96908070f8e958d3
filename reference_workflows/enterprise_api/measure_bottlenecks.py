"""Re-make the measured costs in BOTTLENECKS.md on this machine (loopback only, bounded).

    python -m reference_workflows.enterprise_api.measure_bottlenecks [--db URL] [--scale 1]
        [--postgres] [--json PATH]

Without ``--db`` a fresh SQLite database is seeded at ``--scale`` in a temp folder;
``--postgres`` also measures on a throwaway PostgreSQL 15 cluster (``pgcluster``). The
planted indexes are created only for the with-index timings and dropped again. Each
server runs on a free 127.0.0.1 port and is stopped after its phase; every HTTP phase is
a fixed window of ``WINDOW_S`` seconds, every request has a timeout. Prints a table and
writes JSON rows ``{backend, bottleneck, metric, value, unit}`` with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from reference_workflows.enterprise_api import credentials, queries, seed
from reference_workflows.enterprise_api.crm import BLOCKING_CALL_S
from reference_workflows.enterprise_api.database import DbUrl, parse_db_url, to_pg
from reference_workflows.enterprise_api.launch import free_port, running_app

REPEATS = 7
WINDOW_S = 4.0
CONCURRENCY = 8
BURST = 10
REQUEST_TIMEOUT_S = 30.0
PLANTED_INDEXES = {"created_at": "measure_invoices_created_at", "issued_on": "measure_invoices_issued_on"}
REPORT_1M = ("2022-03-01", "2022-04-01")
REPORT_3M = ("2022-03-01", "2022-06-01")
CHEAP_PATH = "/api/export?limit=1"  # PK order, one row: the cheapest authenticated request
TOKEN = credentials.bearer_token(credentials.client_ids()[0])
AUTH = {"Authorization": TOKEN}

Row = dict[str, Any]


def median_ms(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    fn()  # warm caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


@contextmanager
def sql_runner(db: DbUrl) -> Iterator[Callable[..., list[Any]]]:
    """A function ``run(sql, params=())`` on a plain (unpooled) connection."""
    if db.backend == "sqlite":
        assert db.path is not None
        con = sqlite3.connect(db.path, isolation_level=None)

        def run_sqlite(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
            return con.execute(sql, params).fetchall()
        try:
            yield run_sqlite
        finally:
            con.close()
        return
    import psycopg

    with psycopg.connect(db.url, autocommit=True, connect_timeout=10) as pg:
        def run(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
            cur = pg.execute(to_pg(sql), params)
            return cur.fetchall() if cur.description else []
        yield run


def measure_sql(db: DbUrl) -> list[Row]:
    rows: list[Row] = []

    def add(bottleneck: str, metric: str, value: float, unit: str = "ms") -> None:
        rows.append({"backend": db.backend, "bottleneck": bottleneck, "metric": metric, "value": value, "unit": unit})

    with sql_runner(db) as run:
        encoded = run("SELECT secret_hash FROM api_clients WHERE client_id = ?", (credentials.client_ids()[0],))[0][0]
        secret = credentials.derive_secret(credentials.client_ids()[0])
        add("credential_verification", "pbkdf2_verify", median_ms(lambda: credentials.verify_secret(secret, encoded)))
        total = run("SELECT COUNT(*) FROM invoices")[0][0]
        deep = int(total * 0.9) // queries.PAGE_SIZE * queries.PAGE_SIZE
        phases = [("offset_pagination", "created_at", [
            ("page_1", lambda: run(queries.LIST_SQL, (queries.PAGE_SIZE, 0))),
            (f"offset_{deep}", lambda: run(queries.LIST_SQL, (queries.PAGE_SIZE, deep)))]),
            ("report_without_index", "issued_on", [
                ("report_1_month", lambda: run(queries.REPORT_SQL, REPORT_1M)),
                ("report_3_months", lambda: run(queries.REPORT_SQL, REPORT_3M))])]
        for bottleneck, column, timings in phases:
            for metric, fn in timings:
                add(bottleneck, f"{metric}_no_index", median_ms(fn))
            index = PLANTED_INDEXES[column]
            run(f"CREATE INDEX {index} ON invoices ({column})")
            try:
                for metric, fn in timings:
                    add(bottleneck, f"{metric}_with_index", median_ms(fn))
            finally:
                run(f"DROP INDEX {index}")
    return rows


async def drive(base_url: str, groups: list[tuple[str, int]], seconds: float) -> dict[str, list[float]]:
    """``n`` looping clients per path for ``seconds``; each path's latencies (ms)."""
    latencies: dict[str, list[float]] = {path: [] for path, _ in groups}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=sum(n for _, n in groups))
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        async def loop(path: str) -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                (await client.get(path)).raise_for_status()
                latencies[path].append((time.perf_counter() - started) * 1000)
        await asyncio.gather(*(loop(path) for path, n in groups for _ in range(n)))
    return latencies


async def burst_ms(base_url: str, path: str, n: int) -> float:
    """Median wall time of ``n`` simultaneous requests (REPEATS rounds)."""
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=REQUEST_TIMEOUT_S,
                                 limits=httpx.Limits(max_connections=n)) as client:
        await asyncio.gather(*(client.get(path) for _ in range(n)))  # open the connections
        walls = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get(path) for _ in range(n)))
            walls.append((time.perf_counter() - started) * 1000)
            for r in responses:
                r.raise_for_status()
    return round(statistics.median(walls), 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else float("nan")


def measure_http(db: DbUrl, workdir: Path) -> list[Row]:
    rows: list[Row] = []

    def add(bottleneck: str, metric: str, value: float, unit: str = "ms") -> None:
        rows.append({"backend": db.backend, "bottleneck": bottleneck, "metric": metric, "value": value, "unit": unit})

    account = f"/api/accounts/{1}"
    with running_app(db.url, {"API_POOL_SIZE": "16"}, log_dir=workdir) as app, \
            httpx.Client(base_url=app.base_url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as client:
        for ttl in (0, 60):
            client.put("/admin/config", json={"auth_cache_ttl_s": ttl}).raise_for_status()
            add("credential_verification", f"cheap_request_p50_ttl_{ttl}", median_ms(lambda: client.get(CHEAP_PATH)))
            done = asyncio.run(drive(app.base_url, [(CHEAP_PATH, CONCURRENCY)], WINDOW_S))[CHEAP_PATH]
            add("credential_verification", f"cheap_request_rps_ttl_{ttl}", round(len(done) / WINDOW_S, 1), "rps")
        add("blocking_call", "account_single_ms", median_ms(lambda: client.get(account)))
        add("blocking_call", f"account_burst_{BURST}_wall", asyncio.run(burst_ms(app.base_url, account, BURST)))
        add("blocking_call", f"cheap_burst_{BURST}_wall", asyncio.run(burst_ms(app.base_url, CHEAP_PATH, BURST)))
        add("blocking_call", "serialized_floor", round(BURST * BLOCKING_CALL_S * 1000, 1))
    report = f"/api/reports/revenue?from={REPORT_1M[0]}&to={REPORT_1M[1]}"
    for size in (2, 8):
        env = {"API_POOL_SIZE": str(size), "API_AUTH_CACHE_TTL_S": "60"}
        with running_app(db.url, env, log_dir=workdir) as app:
            lat = asyncio.run(drive(app.base_url, [(report, CONCURRENCY // 2), (CHEAP_PATH, CONCURRENCY // 2)], WINDOW_S))
            stats = httpx.get(f"{app.base_url}/admin/stats", timeout=REQUEST_TIMEOUT_S).json()["pool"]
        add("small_pool", f"cheap_p50_pool_{size}", pct(lat[CHEAP_PATH], 0.5))
        add("small_pool", f"cheap_p95_pool_{size}", pct(lat[CHEAP_PATH], 0.95))
        add("small_pool", f"report_p50_pool_{size}", pct(lat[report], 0.5))
        add("small_pool", f"rps_pool_{size}", round((len(lat[report]) + len(lat[CHEAP_PATH])) / WINDOW_S, 1), "rps")
        add("small_pool", f"mean_wait_pool_{size}", round(stats["wait_ms"] / max(stats["requests"], 1), 1))
    for label, env in (("identity", {}), ("gzip_9", {"API_GZIP": "1", "API_GZIP_LEVEL": "9"}),
                       ("gzip_1", {"API_GZIP": "1", "API_GZIP_LEVEL": "1"})):
        with running_app(db.url, {"API_AUTH_CACHE_TTL_S": "60", **env}, log_dir=workdir) as app, \
                httpx.Client(base_url=app.base_url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as client:
            resp = client.get("/api/export", headers={"Accept-Encoding": "gzip"})
            add("large_payload", f"export_bytes_{label}", resp.num_bytes_downloaded, "bytes")
            add("large_payload", f"export_p50_{label}", median_ms(lambda: client.get("/api/export")))
    return rows


def measure(db_url: str, workdir: Path) -> list[Row]:
    db = parse_db_url(db_url)
    return measure_sql(db) + measure_http(db, workdir)


def print_table(rows: list[Row]) -> None:
    print(f"{'backend':<11} {'bottleneck':<24} {'metric':<30} {'value':>12} unit")
    for r in rows:
        print(f"{r['backend']:<11} {r['bottleneck']:<24} {r['metric']:<30} {r['value']:>12} {r['unit']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the enterprise API's planted bottlenecks.")
    parser.add_argument("--db", help="an already seeded database URL (default: seed SQLite in a temp folder)")
    parser.add_argument("--scale", type=float, default=1.0, help="seed scale when seeding here")
    parser.add_argument("--postgres", action="store_true", help="also measure on a throwaway PostgreSQL cluster")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ea-measure-", dir="/tmp"))
    rows: list[Row] = []
    try:
        url = args.db or f"sqlite:///{workdir}/api.db"
        if not args.db:
            seed.seed_database(url, scale=args.scale)
        rows += measure(url, workdir)
        if args.postgres:
            from reference_workflows.enterprise_api import pgcluster

            cluster = Path(tempfile.mkdtemp(prefix="ea-pg-", dir="/tmp"))  # reachable by the postgres user
            dsn = pgcluster.start_cluster(cluster, free_port())
            try:
                seed.seed_database(dsn, scale=args.scale)
                rows += measure(dsn, workdir)
            finally:
                pgcluster.stop_cluster(cluster)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
