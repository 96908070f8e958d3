"""The capture times psycopg2 and asyncpg (directly, through pools, through SQLAlchemy) in a real
target process against a real PostgreSQL cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import psycopg
import pytest

from tasks.agents.database.sqlcapture import capture_env, read_statements, sql_log_dir

pytestmark = pytest.mark.postgres
RUN_TIMEOUT_S = 120

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    dsn = sys.argv[1]

    import psycopg2, psycopg2.extras
    con = psycopg2.connect(dsn)
    cur = con.cursor()
    cur.execute("SELECT id FROM drv WHERE k = %s", (3,))
    assert cur.fetchall() == [(3,)]
    cur.executemany("INSERT INTO drv (id, k) VALUES (%s, %s)", [(1001, 1), (1002, 2)])
    dict_cur = con.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    dict_cur.execute("SELECT k FROM drv WHERE id = %(id)s", {"id": 5})
    assert dict_cur.fetchone()["k"] == 5
    con.rollback()
    con.close()

    import sqlalchemy as sa
    engine = sa.create_engine("postgresql+psycopg2://" + dsn.split("://", 1)[1])
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM drv WHERE k < :k"), {"k": 10}).scalar() == 10
    engine.dispose()

    import asyncpg
    async def main():
        conn = await asyncpg.connect(dsn)
        assert len(await conn.fetch("SELECT id FROM drv WHERE k BETWEEN $1 AND $2", 1, 4)) == 4
        assert (await conn.fetchrow("SELECT k FROM drv WHERE id = $1", 7))["k"] == 7
        await conn.execute("CREATE TEMP TABLE scratch (a int)")
        await conn.executemany("INSERT INTO scratch VALUES ($1)", [(1,), (2,)])
        await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        assert await pool.fetchval("SELECT max(k) FROM drv WHERE id < $1", 50) == 49
        await pool.close()
        from sqlalchemy.ext.asyncio import create_async_engine
        aengine = create_async_engine("postgresql+asyncpg://" + dsn.split("://", 1)[1])
        async with aengine.connect() as c:
            assert (await c.execute(sa.text("SELECT id FROM drv WHERE k = :k"), {"k": 11})).scalar() == 11
        await aengine.dispose()
    asyncio.run(main())
    print("ok")
    """
)


def test_psycopg2_and_asyncpg_statements_are_captured(tmp_path: Path, pg_cluster: str) -> None:
    with psycopg.connect(pg_cluster, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS drv")
        con.execute("CREATE TABLE drv (id int PRIMARY KEY, k int NOT NULL)")
        con.execute("INSERT INTO drv SELECT g, g FROM generate_series(0, 999) g")
    (tmp_path / "drivers.py").write_text(SCRIPT)
    log_dir = sql_log_dir(tmp_path)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **capture_env(log_dir, {})}
    done = subprocess.run([sys.executable, "drivers.py", pg_cluster], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    frame = read_statements(log_dir)
    sqls = frame["sql"].to_list()

    def one(sql: str) -> dict:
        rows = frame.filter(pl.col("sql") == sql)
        assert rows.height >= 1, (sql, sqls)
        return rows.row(0, named=True)

    assert one("SELECT id FROM drv WHERE k = %s")["params"] == "[3]"  # psycopg2 cursor
    assert one("INSERT INTO drv (id, k) VALUES (%s, %s)")["rows"] == 2  # psycopg2 executemany
    assert one("SELECT k FROM drv WHERE id = %(id)s")["params"] == '{"id": 5}'  # a RealDictCursor
    assert one("SELECT count(*) FROM drv WHERE k < %(k)s")["params"] == '{"k": 10}'  # SQLAlchemy on psycopg2
    fetched = one("SELECT id FROM drv WHERE k BETWEEN $1 AND $2")  # asyncpg fetch
    assert fetched["params"] == "[1, 4]" and fetched["rows"] == 4 and fetched["duration_ms"] > 0
    assert one("SELECT k FROM drv WHERE id = $1")["params"] == "[7]"
    assert one("INSERT INTO scratch VALUES ($1)")["params"] is None  # executemany keeps no parameters
    assert one("SELECT max(k) FROM drv WHERE id < $1")["params"] == "[50]"  # through a pool
    assert one("SELECT id FROM drv WHERE k = $1")["params"] == "[11]"  # SQLAlchemy's asyncpg: prepared
    assert one("SELECT id FROM drv WHERE k = %s")["stack"], "the caller's own frames are kept"
