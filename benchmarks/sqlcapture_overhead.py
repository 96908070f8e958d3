"""What the injected SQL capture adds per statement and per pooled-connection acquisition.

    .venv/bin/python benchmarks/sqlcapture_overhead.py [--statements 20000] [--repeats 5] [--no-pool]

Each case runs in its own interpreter (the capture is injected through sitecustomize exactly as
for a target) and times a loop of ``conn.execute("SELECT ?", (i,)).fetchall()`` on an
in-memory SQLite database, called from three of the "target's own" frames inside a
ThreadPoolExecutor worker (stdlib frames below, as in a Starlette sync handler):

- ``plain``: no capture;
- ``capture``: the capture as shipped: after the first PARAMS_PER_SQL executions of the SQL
  text, no parameters and no stack are kept (the steady state of every repeated statement);
- ``capture+stack``: the capture with PARAMS_PER_SQL raised so that every execution keeps
  its parameters and walks the stack (what the first executions of each SQL text pay, and
  every execution of a statement with pasted literals until MAX_TRACKED_SQL texts).

With a throwaway PostgreSQL cluster (skipped when the binaries are missing or ``--no-pool``),
``with pool.connection(): pass`` on a psycopg_pool ``ConnectionPool`` of one connection, one
thread (never waiting), with and without the capture: the cost of timing ``getconn``.
Prints the median over ``--repeats`` of each case, and the differences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks.agents.database.sqlcapture import ENV_VAR, INJECT_DIR  # noqa: E402

STATEMENTS = 20_000
ACQUISITIONS = 5_000
REPEATS = 5
RUN_TIMEOUT_S = 120

SQLITE_LOOP = """
import json, sqlite3, sys, time
from concurrent.futures import ThreadPoolExecutor
if sys.argv[2] == "stack":
    import perfagents_sqlcapture
    perfagents_sqlcapture.PARAMS_PER_SQL = 10 ** 9
n = int(sys.argv[1])

def query(con, i):
    return con.execute("SELECT ?", (i,)).fetchall()

def handler(con):
    return [query(con, i) for i in range(n)]

def timed():
    con = sqlite3.connect(":memory:")
    handler(con)  # warm
    t0 = time.perf_counter()
    handler(con)
    return (time.perf_counter() - t0) / n * 1e9

with ThreadPoolExecutor(1) as pool:
    print(json.dumps(pool.submit(timed).result()))
"""

POOL_LOOP = """
import json, sys, time
from psycopg_pool import ConnectionPool
n = int(sys.argv[1])
with ConnectionPool(sys.argv[2], min_size=1, max_size=1, open=True) as pool:
    pool.wait()
    for _ in range(200):
        with pool.connection():
            pass
    t0 = time.perf_counter()
    for _ in range(n):
        with pool.connection():
            pass
    print(json.dumps((time.perf_counter() - t0) / n * 1e9))
"""


def run_case(script: str, args: list[str], capture: bool, log_dir: Path) -> float:
    """ns per iteration of one case, in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", ENV_VAR)}
    env["PYTHONPATH"] = os.pathsep.join([str(INJECT_DIR), str(REPO)]) if capture else str(REPO)
    if capture:
        env[ENV_VAR] = str(log_dir)
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def measure_sqlite(statements: int, repeats: int, log_dir: Path) -> dict[str, float]:
    # interleaved per repeat, so a drift of the shared machine hits every case alike
    samples: dict[str, list[float]] = {"plain": [], "capture": [], "capture+stack": []}
    for _ in range(repeats):
        samples["plain"].append(run_case(SQLITE_LOOP, [str(statements), "-"], False, log_dir))
        samples["capture"].append(run_case(SQLITE_LOOP, [str(statements), "-"], True, log_dir))
        samples["capture+stack"].append(run_case(SQLITE_LOOP, [str(statements), "stack"], True, log_dir))
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_pool(acquisitions: int, repeats: int, log_dir: Path) -> dict[str, float] | None:
    from reference_workflows.enterprise_api.launch import free_port
    from reference_workflows.enterprise_api.pgcluster import (
        pg_available,
        start_cluster,
        stop_cluster,
    )

    if not pg_available():
        return None
    folder = Path(tempfile.mkdtemp(prefix="perfagents-pg-bench-", dir="/tmp"))
    dsn = start_cluster(folder, free_port())
    try:
        samples: dict[str, list[float]] = {"plain": [], "capture": []}
        for _ in range(repeats):
            samples["plain"].append(run_case(POOL_LOOP, [str(acquisitions), dsn], False, log_dir))
            samples["capture"].append(run_case(POOL_LOOP, [str(acquisitions), dsn], True, log_dir))
        return {name: statistics.median(values) for name, values in samples.items()}
    finally:
        stop_cluster(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--statements", type=int, default=STATEMENTS)
    parser.add_argument("--acquisitions", type=int, default=ACQUISITIONS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--no-pool", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfagents-capture-bench-") as tmp:
        log_dir = Path(tmp) / "sql"
        sqlite = measure_sqlite(args.statements, args.repeats, log_dir)
        plain = sqlite["plain"]
        print(f"SQLite statement, ns each (median of {args.repeats}, {args.statements} statements per run):")
        for name, ns in sqlite.items():
            print(f"  {name:14s} {ns:9.0f} ns  ({ns / plain:.2f}x plain, +{ns - plain:.0f} ns)")
        print(f"  stack walk + params on a first execution: +{sqlite['capture+stack'] - sqlite['capture']:.0f} ns "
              "over the steady-state capture")
        pool = None if args.no_pool else measure_pool(args.acquisitions, args.repeats, log_dir)
        if pool is None:
            print("pool: skipped (--no-pool or no PostgreSQL binaries)")
        else:
            print(f"psycopg_pool connection() round trip, ns each (median of {args.repeats}, one thread, no wait):")
            for name, ns in pool.items():
                print(f"  {name:14s} {ns:9.0f} ns  ({ns / pool['plain']:.2f}x plain)")
            print(f"  getconn timing: +{pool['capture'] - pool['plain']:.0f} ns per acquisition")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
