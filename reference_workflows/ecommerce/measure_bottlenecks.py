"""Re-make the numbers in BOTTLENECKS.md: each planted bottleneck with and without its fix.

    python -m reference_workflows.ecommerce.measure_bottlenecks --workdir /tmp/shop-measure \\
        [--scale 1.0] [--load] [--repeats 3] [--duration 20] [--json out.json]

Without ``--load``: seed time, in-process timings of the hot functions (missing index,
N+1, search scoring) and single-request HTTP latency, payload sizes and headers (~1 min).
With ``--load``: also 20 s Locust runs of the locustfile at 20 users for each
configuration in LOAD_CONFIGS, repeated round-robin; per-endpoint p95s are the median
over the repeats (~30 s per run). Everything runs on 127.0.0.1 and is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from reference_workflows.ecommerce import catalog, search
from reference_workflows.ecommerce.db import JOURNAL_MODES, Database, prepare_database
from reference_workflows.ecommerce.live_config import config_path
from reference_workflows.ecommerce.orders import add_to_cart, customer_orders
from reference_workflows.ecommerce.seed import seed_database
from reference_workflows.ecommerce.shop_process import run_locust, running_shop

INDEX_SQL = "CREATE INDEX idx_orders_customer_id ON orders(customer_id)"
SAMPLES = 30
HTTP_SAMPLES = 20
SEARCH_QUERIES = ["lamp", "oak", "wireless headphones", "ceramic mug", "portable speaker"]
HTTP_PATHS = {
    "home": "/", "product_page": "/products/1", "catalog": "/api/products?category=5",
    "product": "/api/products/1", "search": "/api/search?q=wireless+headphones",
    "customer_orders": "/api/customers/{customer}/orders", "static": "/static/app.js",
}
PAYLOAD_PATHS = ["/", "/products/1", "/api/products", "/api/products/1",
                 "/api/search?q=wireless+headphones", "/static/app.js", "/static/app.css"]
# name -> (orders.customer_id indexed?, env, cache_ttl_s)
LOAD_CONFIGS: dict[str, tuple[bool, dict[str, str], int]] = {
    "baseline": (False, {}, 0),
    "baseline+workers2": (False, {"SHOP_WORKERS": "2"}, 0),
    "baseline+gzip": (False, {"SHOP_GZIP": "1"}, 0),
    "baseline+cache60": (False, {}, 60),
    "baseline+tuned": (False, {"SHOP_SQLITE_MODE": "tuned"}, 0),
    "index": (True, {}, 0),
    "index+workers2": (True, {"SHOP_WORKERS": "2"}, 0),
    "index+gzip": (True, {"SHOP_GZIP": "1"}, 0),
    "index+cache60": (True, {}, 60),
    "index+tuned": (True, {"SHOP_SQLITE_MODE": "tuned"}, 0),
    "index+joined_reviews": (True, {"SHOP_FIX_N_PLUS_ONE": "1"}, 0),
}
REPORTED = ["total", "customer_orders", "search", "product", "product_page", "catalog", "home",
            "cart_add", "checkout", "static"]


def timed_ms(fn: Callable[[Any], object], inputs: list[Any]) -> dict[str, float]:
    """Median and p95 of one call per input, in ms."""
    times = []
    for item in inputs:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 3), "calls": len(times)}


def copy_db(source: Path, dest: Path) -> Path:
    for leftover in (dest, Path(f"{dest}-wal"), Path(f"{dest}-shm"), config_path(dest)):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(source, dest)
    return dest


def make_indexed_copy(db: Path, dest: Path) -> float:
    copy_db(db, dest)
    with closing(sqlite3.connect(dest)) as con:
        started = time.perf_counter()
        con.execute(INDEX_SQL)
        con.commit()
        return round(time.perf_counter() - started, 3)


def query_plan(db: Path, sql: str) -> str:
    with closing(sqlite3.connect(db)) as con:
        return " | ".join(r[3] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}", (1,)))


def measure_missing_index(db: Path, indexed: Path, customers: list[int]) -> dict[str, Any]:
    sql = "SELECT id FROM orders WHERE customer_id = ?"
    out: dict[str, Any] = {"location": "orders.customer_id", "endpoint": "customer_orders",
                           "function": "reference_workflows.ecommerce.orders:customer_orders"}
    for label, path in (("without_index", db), ("with_index", indexed)):
        shop = Database(path)
        out[label] = {**timed_ms(partial(customer_orders, shop), customers),
                      "plan": query_plan(path, sql)}
    out["ratio"] = round(out["without_index"]["median_ms"] / out["with_index"]["median_ms"], 1)
    return out


def count_queries(shop: Database, fn: Callable[[], object]) -> int:
    count = 0

    def trace(_: str) -> None:
        nonlocal count
        count += 1

    con = shop.connection()
    con.set_trace_callback(trace)
    try:
        fn()
    finally:
        con.set_trace_callback(None)
    return count


def measure_n_plus_one(db: Path) -> dict[str, Any]:
    shop = Database(db)
    busiest = shop.query("SELECT product_id FROM reviews GROUP BY product_id ORDER BY COUNT(*) DESC LIMIT 1")[0][0]
    products = [busiest] * SAMPLES
    out: dict[str, Any] = {"location": "reference_workflows.ecommerce.catalog:fetch_reviews_n_plus_one",
                           "endpoints": ["product", "product_page"], "product_id": busiest}
    for label, fn in (("n_plus_one", catalog.fetch_reviews_n_plus_one), ("joined", catalog.fetch_reviews_joined)):
        out[label] = {**timed_ms(partial(fn, shop), products),
                      "queries": count_queries(shop, partial(fn, shop, busiest))}
    out["ratio"] = round(out["n_plus_one"]["median_ms"] / out["joined"]["median_ms"], 1)
    return out


def measure_search(db: Path) -> dict[str, Any]:
    shop = Database(db)
    out: dict[str, Any] = {"location": "reference_workflows.ecommerce.search:score_product", "endpoint": "search"}
    for query in SEARCH_QUERIES:
        terms = search.search_terms(query)
        where = " OR ".join("name LIKE ?" for _ in terms)
        sql = f"SELECT id, name, price, description, category_id FROM products WHERE {where} LIMIT ?"
        params = [f"%{t}%" for t in terms] + [search.SEARCH_CANDIDATES]
        total = timed_ms(lambda q: search.search_products(shop, q), [query] * SAMPLES)
        fetch = timed_ms(lambda args: shop.query(*args), [(sql, params)] * SAMPLES)
        out[query] = {"total_ms": total["median_ms"], "sql_ms": fetch["median_ms"],
                      "python_share": round(1 - fetch["median_ms"] / total["median_ms"], 3)}
    return out


def measure_sqlite_modes(db: Path, workdir: Path, customers: list[int]) -> dict[str, Any]:
    """Write-commit latency and the unindexed scan, per SHOP_SQLITE_MODE, on a copy."""
    out: dict[str, Any] = {}
    for mode in JOURNAL_MODES:
        path = copy_db(db, workdir / f"mode-{mode}.db")
        prepare_database(path, mode)
        shop = Database(path, mode)
        commits = timed_ms(partial(add_to_cart, shop, product_id=1, quantity=1), customers)
        scans = timed_ms(partial(customer_orders, shop), customers)
        out[mode] = {"cart_add_commit_ms": commits, "customer_orders_ms": scans}
    return out


def http_latency(url: str, customers: list[int]) -> dict[str, float]:
    out = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for name, path in HTTP_PATHS.items():
            paths = [path.format(customer=c) for c in customers[:HTTP_SAMPLES]]
            out[name] = timed_ms(lambda p: client.get(p).raise_for_status(), paths)["median_ms"]
    return out


def measure_http(db: Path, indexed: Path, workdir: Path, customers: list[int]) -> dict[str, Any]:
    """Sequential single-request latency (no load), payload bytes and static headers."""
    out: dict[str, Any] = {}
    for label, source in (("without_index", db), ("with_index", indexed)):
        with running_shop(copy_db(source, workdir / "http.db")) as shop:
            out[f"latency_ms_{label}"] = http_latency(shop.url, customers)
            headers = httpx.get(f"{shop.url}/static/app.js").headers
            out["static_headers"] = {k: headers.get(k) for k in ("cache-control", "etag", "last-modified", "content-encoding")}
    with running_shop(copy_db(db, workdir / "http.db"), {"SHOP_GZIP": "1"}) as shop, \
            httpx.Client(base_url=shop.url, timeout=30) as client:
        payload = {}
        for path in PAYLOAD_PATHS:
            plain = client.get(path, headers={"Accept-Encoding": "identity"})
            packed = client.get(path, headers={"Accept-Encoding": "gzip"})
            payload[path] = {"identity_bytes": plain.num_bytes_downloaded, "gzip_bytes": packed.num_bytes_downloaded}
        out["payload"] = payload
    return out


def measure_load(db: Path, indexed: Path, workdir: Path, configs: list[str], repeats: int,
                 duration_s: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for repeat in range(repeats):
        for name in configs:
            use_index, env, ttl = LOAD_CONFIGS[name]
            run_db = copy_db(indexed if use_index else db, workdir / "load.db")
            with running_shop(run_db, env, log=workdir / f"{name}.log") as shop:
                if ttl:
                    httpx.put(f"{shop.url}/admin/config", json={"cache_ttl_s": ttl}, timeout=10).raise_for_status()
                stats = run_locust(shop.url, workdir / f"{name}-{repeat}", duration_s=duration_s)
            runs[name].append({k: asdict(v) for k, v in stats.items()})
            print(f"  {name} run {repeat + 1}: total p95 {stats['total'].p95_ms:.0f} ms, "
                  f"customer_orders p95 {stats.get('customer_orders') and stats['customer_orders'].p95_ms} ms",
                  file=sys.stderr)
    summary = {}
    for name, results in runs.items():
        summary[name] = {ep: {m: round(statistics.median(r[ep][m] for r in results if ep in r), 1)
                              for m in ("p50_ms", "p95_ms", "p99_ms", "rps", "requests", "failures")}
                         for ep in REPORTED if all(ep in r for r in results)}
    return {"repeats": repeats, "duration_s": duration_s, "users": 20, "median_of_repeats": summary, "runs": runs}


def print_report(report: dict[str, Any]) -> None:
    print(f"seed: {report['seed_s']} s; index build: {report['index_build_s']} s")
    mi = report["missing_index"]
    print(f"missing index orders.customer_id: customer_orders() median {mi['without_index']['median_ms']} ms "
          f"-> {mi['with_index']['median_ms']} ms with the index ({mi['ratio']}x)")
    n1 = report["n_plus_one"]
    print(f"N+1 reviews (product {n1['product_id']}): {n1['n_plus_one']['queries']} queries "
          f"{n1['n_plus_one']['median_ms']} ms -> {n1['joined']['queries']} query {n1['joined']['median_ms']} ms")
    for query, row in report["search"].items():
        if isinstance(row, dict):
            print(f"search {query!r}: {row['total_ms']} ms, SQL {row['sql_ms']} ms, Python {row['python_share']:.0%}")
    for mode, row in report["sqlite_modes"].items():
        print(f"sqlite {mode}: cart_add commit median {row['cart_add_commit_ms']['median_ms']} ms "
              f"p95 {row['cart_add_commit_ms']['p95_ms']} ms; customer_orders() median "
              f"{row['customer_orders_ms']['median_ms']} ms")
    http = report["http"]
    print("single-request latency ms (no index / index):",
          {k: (v, http["latency_ms_with_index"][k]) for k, v in http["latency_ms_without_index"].items()})
    print("static headers:", http["static_headers"])
    for path, row in http["payload"].items():
        print(f"payload {path}: {row['identity_bytes']} B, gzip {row['gzip_bytes']} B")
    if "load" in report:
        print("load (p95 ms, median of repeats):")
        print("config".ljust(20) + "".join(ep[:15].rjust(16) for ep in REPORTED) + "rps".rjust(8) + "fail".rjust(6))
        for name, eps in report["load"]["median_of_repeats"].items():
            cells = "".join(str(eps.get(ep, {}).get("p95_ms", "-")).rjust(16) for ep in REPORTED)
            print(name.ljust(20) + cells + str(eps["total"]["rps"]).rjust(8) + str(eps["total"]["failures"]).rjust(6))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the shop's planted bottlenecks.")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--load", action="store_true", help="also run Locust for each configuration")
    parser.add_argument("--configs", default=",".join(LOAD_CONFIGS), help="comma-separated LOAD_CONFIGS names")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--duration", type=int, default=20, help="seconds per Locust run")
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args(argv)
    # SIGTERM/SIGINT unwind through the `running_shop` blocks, which stop the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in LOAD_CONFIGS]
    if unknown:
        parser.error(f"unknown config {unknown[0]!r} (known: {', '.join(LOAD_CONFIGS)})")
    args.workdir.mkdir(parents=True, exist_ok=True)
    db, indexed = args.workdir / "shop.db", args.workdir / "shop-indexed.db"
    started = time.perf_counter()
    seed_database(db, scale=args.scale)
    report: dict[str, Any] = {"seed_s": round(time.perf_counter() - started, 2),
                              "index_build_s": make_indexed_copy(db, indexed)}
    n_customers = Database(db).query("SELECT MAX(id) FROM customers")[0][0]
    customers = random.Random(1).sample(range(1, n_customers + 1), SAMPLES)
    report["missing_index"] = measure_missing_index(db, indexed, customers)
    report["n_plus_one"] = measure_n_plus_one(db)
    report["search"] = measure_search(db)
    report["sqlite_modes"] = measure_sqlite_modes(db, args.workdir, customers)
    report["http"] = measure_http(db, indexed, args.workdir, customers)
    if args.load:
        report["load"] = measure_load(db, indexed, args.workdir, configs, args.repeats, args.duration)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
