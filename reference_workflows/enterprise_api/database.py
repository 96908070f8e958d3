"""Database URLs and a bounded async connection pool over SQLite or PostgreSQL.

``API_DB`` is ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a
``postgresql://user@host:port/db`` URL. Both backends give the same small interface:
``async with pool.session() as s`` (one pooled connection for a request's reads) and
``async with pool.transaction() as s`` (BEGIN ... COMMIT, ROLLBACK on error), with
``await s.fetchall(sql, params)`` / ``await s.execute(sql, params)``. SQL is written once
with ``?`` placeholders (the texts contain no other ``?`` or ``%``).

- PostgreSQL: psycopg 3's ``AsyncConnectionPool`` with min = max = ``size`` connections.
- SQLite: ``size`` connections in a queue, each used by one request at a time from a worker
  thread (sqlite3 releases the GIL while a statement runs), so ``API_POOL_SIZE`` bounds
  concurrency on both backends. A request that waits longer than ``POOL_TIMEOUT_S`` for a
  connection fails with ``PoolTimeoutError`` (the API answers 503).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread

POOL_TIMEOUT_S = 30.0
SQLITE_BUSY_TIMEOUT_S = 10.0
PG_CONNECT_TIMEOUT_S = 10


class DatabaseError(RuntimeError):
    """The database URL is malformed, or the database is missing or not seeded."""


class PoolTimeoutError(RuntimeError):
    """No pooled connection became free within ``POOL_TIMEOUT_S``."""


@dataclass(frozen=True)
class DbUrl:
    backend: Literal["sqlite", "postgresql"]
    url: str
    path: Path | None = None  # SQLite file

    def redacted(self) -> str:
        """The URL without its password (for logs and errors)."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))


def parse_db_url(url: str) -> DbUrl:
    """``sqlite:///path`` or ``postgresql://...`` -> DbUrl; anything else is a DatabaseError."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        if not path or path == ":memory:":
            raise DatabaseError(f"database URL {url!r} needs a file path (sqlite:///file.db)")
        return DbUrl("sqlite", url, Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        return DbUrl("postgresql", url)
    raise DatabaseError(f"database URL {url!r} is neither sqlite:///path nor postgresql://...")


def to_pg(sql: str) -> str:
    return sql.replace("?", "%s")


def plain(value: Any) -> Any:
    """A PostgreSQL value as SQLite would give it (ISO text, float)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


class Session(Protocol):
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class Pool(Protocol):
    backend: str
    size: int

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def session(self) -> Any: ...

    def transaction(self) -> Any: ...

    def stats(self) -> dict[str, Any]: ...


def create_pool(db: DbUrl, size: int) -> SqlitePool | PostgresPool:
    if size < 1:
        raise DatabaseError(f"pool size must be at least 1, got {size}")
    return SqlitePool(db, size) if db.backend == "sqlite" else PostgresPool(db, size)


class SqliteSession:
    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await anyio.to_thread.run_sync(self._fetchall, sql, params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await anyio.to_thread.run_sync(self._execute, sql, params)

    def _fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = self.con.cursor()
        try:
            return cursor.execute(sql, params).fetchall()
        finally:
            cursor.close()

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        cursor = self.con.cursor()
        try:
            return cursor.execute(sql, params).rowcount
        finally:
            cursor.close()


class SqlitePool:
    """``size`` SQLite connections handed out one request at a time."""

    backend = "sqlite"

    def __init__(self, db: DbUrl, size: int, timeout_s: float = POOL_TIMEOUT_S) -> None:
        assert db.path is not None
        self.path, self.size, self.timeout_s = db.path, size, timeout_s
        self._idle: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        self._all: list[sqlite3.Connection] = []
        self._requests = self._waits = self._waiting = 0
        self._wait_ms = 0.0

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False, cached_statements=64)

    async def open(self) -> None:
        if not self.path.is_file():
            raise DatabaseError(f"SQLite database {self.path} does not exist (run the seed first)")
        for _ in range(self.size):
            con = await anyio.to_thread.run_sync(self._connect)
            self._all.append(con)
            self._idle.put_nowait(con)

    async def close(self) -> None:
        for con in self._all:
            con.close()
        self._all.clear()

    async def _acquire(self) -> sqlite3.Connection:
        self._requests += 1
        try:
            return self._idle.get_nowait()
        except asyncio.QueueEmpty:
            pass
        self._waits += 1
        self._waiting += 1
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(self._idle.get(), self.timeout_s)
        except TimeoutError as exc:
            raise PoolTimeoutError(f"no database connection free within {self.timeout_s:g} s "
                                   f"(pool size {self.size})") from exc
        finally:
            self._waiting -= 1
            self._wait_ms += (time.perf_counter() - started) * 1000

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SqliteSession]:
        con = await self._acquire()
        try:
            yield SqliteSession(con)
        finally:
            self._idle.put_nowait(con)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteSession]:
        async with self.session() as s:
            await s.execute("BEGIN IMMEDIATE")
            try:
                yield s
                with anyio.CancelScope(shield=True):
                    await s.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    if s.con.in_transaction:  # also when COMMIT itself failed
                        await s.execute("ROLLBACK")
                raise

    def stats(self) -> dict[str, Any]:
        return {"backend": self.backend, "size": self.size, "in_use": self.size - self._idle.qsize(),
                "waiting": self._waiting, "requests": self._requests, "waits": self._waits,
                "wait_ms": round(self._wait_ms, 1)}


class PostgresSession:
    def __init__(self, con: Any) -> None:
        self.con = con

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = await self.con.execute(to_pg(sql), params)
        return [tuple(plain(v) for v in row) for row in await cursor.fetchall()]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self.con.execute(to_pg(sql), params)
        return cursor.rowcount


class PostgresPool:
    """psycopg_pool.AsyncConnectionPool with min = max = ``size`` (autocommit connections)."""

    backend = "postgresql"

    def __init__(self, db: DbUrl, size: int, timeout_s: float = POOL_TIMEOUT_S) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.db, self.size, self.timeout_s = db, size, timeout_s
        self._pool = AsyncConnectionPool(
            db.url, min_size=size, max_size=size, timeout=timeout_s, open=False,
            kwargs={"autocommit": True, "connect_timeout": PG_CONNECT_TIMEOUT_S},
            name="enterprise-api")

    async def open(self) -> None:
        from psycopg_pool import PoolTimeout

        try:
            await self._pool.open(wait=True, timeout=PG_CONNECT_TIMEOUT_S * 2)
        except PoolTimeout as exc:
            await self._pool.close()
            raise DatabaseError(f"cannot connect to {self.db.redacted()}: {exc}") from exc

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        from psycopg_pool import PoolTimeout

        try:
            async with self._pool.connection() as con:
                yield con
        except PoolTimeout as exc:
            raise PoolTimeoutError(f"no database connection free within {self.timeout_s:g} s "
                                   f"(pool size {self.size})") from exc

    @asynccontextmanager
    async def session(self) -> AsyncIterator[PostgresSession]:
        async with self._connection() as con:
            yield PostgresSession(con)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresSession]:
        async with self._connection() as con, con.transaction():
            yield PostgresSession(con)

    def stats(self) -> dict[str, Any]:
        raw = self._pool.get_stats()
        return {"backend": self.backend, "size": self.size,
                "in_use": raw.get("pool_size", 0) - raw.get("pool_available", 0),
                "waiting": raw.get("requests_waiting", 0), "requests": raw.get("requests_num", 0),
                "waits": raw.get("requests_queued", 0), "wait_ms": raw.get("requests_wait_ms", 0)}
