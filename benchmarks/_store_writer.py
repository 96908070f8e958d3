"""The writer benchmarks/store_kill.py SIGKILLs: commits numbered transactions in a loop, logging each.

    python benchmarks/_store_writer.py in-place|copy STORE LOG ROWS

Each transaction inserts ROWS request samples and rewrites a live row (a table with a primary
key, as a run's live row is); after its commit, its number goes to LOG, fsynced. ``in-place``
opens with ``duckdb.connect`` and closes with DuckDB's default checkpoint (the store before
tasks/store/checkpoint.py); ``copy`` uses the store's ``Connection`` with the WAL bound lowered
to 256 KiB, so that kills land in its checkpoints by copy too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TABLES = ("CREATE TABLE IF NOT EXISTS t (id BIGINT, endpoint VARCHAR, latency_ms DOUBLE, status INTEGER)",
          "CREATE TABLE IF NOT EXISTS live (run_id INTEGER PRIMARY KEY, state VARCHAR)")
SAMPLES = "INSERT INTO t SELECT range + ?, 'GET /products/' || (range % 50), random() * 100, 200 FROM range(?)"
LIVE = "INSERT OR REPLACE INTO live VALUES (? % 50, repeat('state', 40) || ?)"  # a run's live row, rewritten


def in_place(path: str) -> Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]:
    @contextmanager
    def transaction() -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(path)
        try:
            con.begin()
            yield con
            con.commit()
        finally:
            con.close()  # DuckDB's default: checkpoint the WAL into the file, in place
    return transaction


def by_copy(path: str) -> Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]:
    import tasks.store.checkpoint as checkpoint
    from tasks.store.connection import Connection

    checkpoint.WAL_MIN_BYTES = 256 << 10
    return Connection(path).transaction


def main() -> None:
    way, path, log, rows = sys.argv[1:5]
    transaction = by_copy(path) if way == "copy" else in_place(path)
    with transaction() as con:
        for sql in TABLES:
            con.execute(sql)
        row = con.execute("SELECT coalesce(max(id) // 10000 + 1, 0) FROM t").fetchone()
    i = int(row[0]) if row else 0
    print("ready", flush=True)
    with open(log, "a") as out:
        while True:
            with transaction() as con:
                con.execute(SAMPLES, [i * 10000, int(rows)])
                con.execute(LIVE, [i, i])
            out.write(f"{i}\n")
            out.flush()
            os.fsync(out.fileno())
            i += 1


if __name__ == "__main__":
    main()
