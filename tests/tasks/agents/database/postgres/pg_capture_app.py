"""A small Starlette + psycopg 3 target for the PostgreSQL capture tests (run under uvicorn).

``APP_DSN`` names the database (``seed`` creates its ``invoices`` table). Routes:
- ``GET /invoices?page=N``: async, ``AsyncConnection.execute``; OFFSET pagination ordered by created_at
- ``GET /report?day=YYYY-MM-DD``: sync (Starlette's thread pool), ``Cursor.execute``; filters on issued_on
- ``GET /invoices/{iid:int}``: async cursor; reads issued_on and created_at but filters on the primary key
- ``POST /notes``: sync ``executemany`` of a psycopg ``sql.Composed`` statement
"""

from __future__ import annotations

import datetime as dt
import os

import psycopg
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PAGE_SQL = "SELECT id, amount FROM invoices ORDER BY created_at, id LIMIT %s OFFSET %s"
REPORT_SQL = ("SELECT account_id, count(*), sum(amount) FROM invoices "
              "WHERE issued_on >= %s AND issued_on < %s GROUP BY account_id")
DETAIL_SQL = "SELECT id, amount, issued_on, created_at FROM invoices WHERE id = %s"
PAGE_SIZE = 20


def seed(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("SELECT setseed(0.3)")
        con.execute("CREATE TABLE invoices (id bigint PRIMARY KEY, account_id int NOT NULL, "
                    "created_at timestamptz NOT NULL, issued_on date NOT NULL, amount numeric(10, 2) NOT NULL)")
        con.execute("INSERT INTO invoices SELECT g, 1 + (random() * 499)::int, "
                    "timestamptz '2023-01-01' + random() * interval '700 days', "
                    "date '2023-01-01' + (random() * 700)::int, round((random() * 1000)::numeric, 2) "
                    "FROM generate_series(1, %s) g", [rows])
        con.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        con.execute("ANALYZE")


def dsn() -> str:
    return os.environ["APP_DSN"]


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def invoices(request: Request) -> JSONResponse:
    page = int(request.query_params.get("page", "1"))
    async with await psycopg.AsyncConnection.connect(dsn(), autocommit=True) as con:
        cur = await con.execute(PAGE_SQL, [PAGE_SIZE, (page - 1) * PAGE_SIZE])
        rows = await cur.fetchall()
    return JSONResponse({"invoices": len(rows)})


def report(request: Request) -> JSONResponse:
    day = dt.date.fromisoformat(request.query_params["day"])
    with psycopg.connect(dsn(), autocommit=True) as con, con.cursor() as cur:
        cur.execute(REPORT_SQL, [day, day + dt.timedelta(days=30)])
        rows = cur.fetchall()
    return JSONResponse({"accounts": len(rows)})


async def detail(request: Request) -> JSONResponse:
    async with await psycopg.AsyncConnection.connect(dsn(), autocommit=True) as con:
        cur = con.cursor()
        await cur.execute(DETAIL_SQL, [request.path_params["iid"]])
        row = await cur.fetchone()
    return JSONResponse({"found": row is not None})


def notes(request: Request) -> JSONResponse:
    stmt = sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(sql.Identifier("notes"))
    with psycopg.connect(dsn(), autocommit=True) as con, con.cursor() as cur:
        cur.executemany(stmt, [("a",), ("b",), ("c",)])
    return JSONResponse({"added": 3})


app = Starlette(routes=[
    Route("/health", health),
    Route("/invoices", invoices),
    Route("/invoices/{iid:int}", detail),
    Route("/report", report),
    Route("/notes", notes, methods=["POST"]),
])
