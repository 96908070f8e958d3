"""A Starlette target on psycopg_pool for the pool-wait and PostgreSQL call-site tests (run under uvicorn).

``APP_DSN`` names the database (``seed`` creates its ``things`` table), ``APP_POOL_SIZE`` the
size of its one ``AsyncConnectionPool`` (min = max). Every statement goes through the
``Store.fetch`` wrapper, as in a real app. Routes:
- ``GET /slow``: ``SELECT pg_sleep(SLEEP_S)``, one pooled connection held for ~20 ms
- ``GET /labels/{n:int}``: the planted N+1, ``load_labels_n_plus_one`` (one query per id)
- ``GET /count``: one aggregate
- ``GET /crunch``: a slow statement that reads no table (md5 of a long string)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SLEEP_S = 0.02
THINGS = 200
POOL_OPEN_TIMEOUT_S = 20
CRUNCH_REPEATS = 500_000  # of an ~18-character random() text


def seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("CREATE TABLE things (id int PRIMARY KEY, label text NOT NULL)")
        con.execute("INSERT INTO things SELECT g, 'thing ' || g FROM generate_series(1, %s) g", [THINGS])
        con.execute("ANALYZE")


class Store:
    """The app's database wrapper: every statement goes through ``fetch``."""

    def __init__(self, dsn: str, size: int) -> None:
        self.pool = AsyncConnectionPool(dsn, min_size=size, max_size=size, open=False,
                                        kwargs={"autocommit": True}, name="pool-app")

    async def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as con:
            cur = await con.execute(sql, params)
            return await cur.fetchall()


STORE = Store(os.environ.get("APP_DSN", ""), int(os.environ.get("APP_POOL_SIZE", "1")))


async def load_labels_n_plus_one(store: Store, n: int) -> list[str]:
    """The planted N+1: the ids, then one query per id."""
    ids = await store.fetch("SELECT id FROM things ORDER BY id LIMIT %s", [n])
    labels = []
    for (thing_id,) in ids:
        rows = await store.fetch("SELECT label FROM things WHERE id = %s", [thing_id])
        labels.append(rows[0][0])
    return labels


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def slow(request: Request) -> JSONResponse:
    await STORE.fetch("SELECT pg_sleep(%s)", [SLEEP_S])
    return JSONResponse({"slept_s": SLEEP_S})


async def labels(request: Request) -> JSONResponse:
    return JSONResponse({"labels": await load_labels_n_plus_one(STORE, request.path_params["n"])})


async def count(request: Request) -> JSONResponse:
    rows = await STORE.fetch("SELECT count(*) FROM things")
    return JSONResponse({"count": rows[0][0]})


async def crunch(request: Request) -> JSONResponse:
    # random() is volatile: computed when executed, not folded when planned
    rows = await STORE.fetch("SELECT md5(repeat(random()::text, %s))", [CRUNCH_REPEATS])
    return JSONResponse({"md5": rows[0][0]})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await STORE.pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
    try:
        yield
    finally:
        await STORE.pool.close()


app = Starlette(lifespan=lifespan, routes=[
    Route("/health", health),
    Route("/slow", slow),
    Route("/labels/{n:int}", labels),
    Route("/count", count),
    Route("/crunch", crunch),
])
