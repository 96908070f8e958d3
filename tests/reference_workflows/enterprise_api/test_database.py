"""The SQLite pool really bounds concurrency to its size; URLs parse as the launcher expects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reference_workflows.enterprise_api.database import (
    DatabaseError,
    PoolTimeoutError,
    SqlitePool,
    parse_db_url,
)


def test_parse_db_url_forms():
    assert parse_db_url("sqlite:///rel/api.db").path == Path("rel/api.db")
    assert parse_db_url("sqlite:////abs/api.db").path == Path("/abs/api.db")
    pg = parse_db_url("postgresql://app:s3cret@127.0.0.1:5432/db")
    assert pg.backend == "postgresql" and "s3cret" not in pg.redacted()
    for bad in ("sqlite:///", "sqlite:///:memory:", "mysql://x/y", "api.db"):
        with pytest.raises(DatabaseError):
            parse_db_url(bad)


def test_sqlite_pool_hands_out_at_most_size_connections(sqlite_url: str):
    async def scenario() -> tuple[int, dict]:
        pool = SqlitePool(parse_db_url(sqlite_url), size=2)
        await pool.open()
        active = peak = 0

        async def request() -> None:
            nonlocal active, peak
            async with pool.session() as s:
                active += 1
                peak = max(peak, active)
                await s.fetchall("SELECT COUNT(*) FROM accounts")
                await asyncio.sleep(0.05)
                active -= 1

        try:
            await asyncio.gather(*(request() for _ in range(6)))
            return peak, pool.stats()
        finally:
            await pool.close()

    peak, stats = asyncio.run(scenario())
    assert peak == 2
    assert stats["requests"] == 6 and stats["waits"] == 4 and stats["wait_ms"] > 0 and stats["in_use"] == 0


def test_sqlite_pool_times_out_and_rolls_back(sqlite_url: str):
    async def scenario() -> int:
        pool = SqlitePool(parse_db_url(sqlite_url), size=1, timeout_s=0.1)
        await pool.open()
        try:
            async with pool.session():
                with pytest.raises(PoolTimeoutError):
                    async with pool.session():
                        pass
            with pytest.raises(RuntimeError, match="boom"):
                async with pool.transaction() as s:
                    await s.execute("UPDATE accounts SET balance = -1 WHERE id = 1")
                    raise RuntimeError("boom")
            async with pool.session() as s:
                return (await s.fetchall("SELECT COUNT(*) FROM accounts WHERE balance = -1"))[0][0]
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == 0
