"""A tiny real Starlette + SQLite target for the tracing agent's tests (not a test module).

Its code knows nothing of OpenTelemetry: ``opentelemetry-instrument`` adds the spans.

- /health          ready probe
- /items/{item_id} DB-bound: one heavy recursive query + DB_LOOKUPS small lookups, all through
                   ``cursor.execute`` (what the sqlite3 instrumentation traces)
- /ping            no DB at all: a little Python work

Usage: python traced_app.py --port N   (the database file comes from $APP_DB)
"""

from __future__ import annotations

import argparse
import os
import sqlite3

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

DB_LOOKUPS = 3
HEAVY_ROWS = 60_000  # rows the recursive query counts: a few ms of pure SQLite work
HEAVY_SQL = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
             "SELECT count(*) FROM c")


def db_path() -> str:
    return os.environ["APP_DB"]


def seed() -> None:
    con = sqlite3.connect(db_path())
    cur = con.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
    cur.execute("DELETE FROM items")
    cur.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item{i}") for i in range(1, 101)])
    con.commit()
    con.close()


def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def item(request: Request) -> JSONResponse:
    item_id = int(request.path_params["item_id"])
    con = sqlite3.connect(db_path())
    try:
        cur = con.cursor()
        cur.execute(HEAVY_SQL, (HEAVY_ROWS,))
        counted = cur.fetchone()[0]
        names = []
        for offset in range(DB_LOOKUPS):
            cur.execute("SELECT name FROM items WHERE id = ?", (item_id + offset,))
            row = cur.fetchone()
            names.append(row[0] if row else None)
    finally:
        con.close()
    return JSONResponse({"id": item_id, "names": names, "counted": counted})


def ping(request: Request) -> JSONResponse:
    return JSONResponse({"pong": sum(range(2000))})


app = Starlette(routes=[
    Route("/health", health),
    Route("/items/{item_id:int}", item),
    Route("/ping", ping),
])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    seed()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
