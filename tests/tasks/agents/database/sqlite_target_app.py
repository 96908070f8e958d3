"""A tiny real Starlette + SQLite target for the database agent's tests (not a test module).

- /users/{uid}/orders   connection.execute, filters orders.user_id (no index: full scan)
- /orders/latest        N+1: one users lookup per order, through connection.execute
- /items                cursor.execute, filters items.category AND items.color (composite index)
- /users/{uid}          a literal pasted into the SQL (normalization must merge them)
- /orders/pending       uses idx_orders_status; idx_items_sku is never used
The database file comes from $APP_DB; ``seed(path)`` creates it; ``serve(...)`` runs it.
"""

from __future__ import annotations

import os
import random
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

USERS = 2000
ORDERS = 80_000
ITEMS = 40_000
CATEGORIES = 50
COLORS = 20
N_PLUS_ONE = 12


def seed(path: str) -> None:
    rng = random.Random(7)
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, amount REAL, status TEXT);
        CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT, category TEXT, color TEXT, price REAL);
        CREATE INDEX idx_orders_status ON orders(status);
        CREATE INDEX idx_items_sku ON items(sku);
        """
    )
    con.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"user{i}") for i in range(1, USERS + 1)])
    statuses = ["paid"] * 40 + ["shipped"] * 59 + ["pending"]
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)",
        [(i, rng.randint(1, USERS), rng.random() * 100, rng.choice(statuses)) for i in range(1, ORDERS + 1)],
    )
    con.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
        [(i, f"sku{i}", f"cat{rng.randrange(CATEGORIES)}", f"color{rng.randrange(COLORS)}", rng.random() * 50)
         for i in range(1, ITEMS + 1)],
    )
    con.commit()
    con.close()


def _connect() -> sqlite3.Connection:
    return sqlite3.connect(os.environ["APP_DB"])


def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def user_orders(request: Request) -> JSONResponse:
    con = _connect()
    try:
        rows = con.execute("SELECT id, amount FROM orders WHERE user_id = ?", (request.path_params["uid"],)).fetchall()
    finally:
        con.close()
    return JSONResponse({"orders": len(rows)})


def latest_orders(request: Request) -> JSONResponse:
    con = _connect()
    try:
        orders = con.execute("SELECT id, user_id FROM orders ORDER BY id DESC LIMIT ?", (N_PLUS_ONE,)).fetchall()
        names = [con.execute("SELECT name FROM users WHERE id = ?", (uid,)).fetchone()[0] for _, uid in orders]
    finally:
        con.close()
    return JSONResponse({"names": names})


async def items(request: Request) -> JSONResponse:
    con = _connect()
    try:
        cur = con.cursor()
        cur.execute("SELECT id, price FROM items WHERE category = ? AND color = ?",
                    (request.query_params["category"], request.query_params["color"]))
        rows = cur.fetchall()
    finally:
        con.close()
    return JSONResponse({"items": len(rows)})


def user(request: Request) -> JSONResponse:
    uid = int(request.path_params["uid"])
    con = _connect()
    try:
        row = con.execute(f"SELECT id, name FROM users WHERE id = {uid}").fetchone()
    finally:
        con.close()
    return JSONResponse({"name": row[1] if row else None})


def pending(request: Request) -> JSONResponse:
    con = _connect()
    try:
        (count,) = con.execute("SELECT count(*) FROM orders WHERE status = ?", ("pending",)).fetchone()
    finally:
        con.close()
    return JSONResponse({"pending": count})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(python: str, db: Path, extra_env: dict[str, str], log: Path, ready_s: float = 30) -> Iterator[str]:
    """Run this app under uvicorn with ``python`` on a free loopback port; yield its base URL."""
    port = free_port()
    env = {**os.environ, "APP_DB": str(db), **extra_env}
    cmd = [python, "-m", "uvicorn", "sqlite_target_app:app", "--host", "127.0.0.1", "--port", str(port),
           "--app-dir", str(Path(__file__).parent), "--no-access-log"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app not ready in {ready_s} s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


app = Starlette(routes=[
    Route("/health", health),
    Route("/users/{uid:int}/orders", user_orders),
    Route("/orders/latest", latest_orders),
    Route("/orders/pending", pending),
    Route("/items", items),
    Route("/users/{uid:int}", user),
])
