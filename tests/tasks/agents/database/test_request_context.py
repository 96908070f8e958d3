"""Exact request attribution whatever the server: real gunicorn (sync, gthread), werkzeug and
uvicorn targets on real ports, real SQLite, requests named by a real Locust process."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import polars as pl
import pytest

from tasks.agents.database.sql.stats import add_endpoint_column
from tasks.agents.database.sqlcapture import capture_env, read_statements, sql_log_dir
from tasks.load.runner import run_load_test
from tasks.spec import TargetSpec

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
FLUSH_WAIT_S = 0.8  # the capture writes every 0.25 s, one interval late
HEADER = "X-Perfagents-Request"
N_PLUS_ONE = 5

FLASK_APP = textwrap.dedent(
    """
    import os, sqlite3, sys
    from flask import Flask, jsonify

    app = Flask(__name__)
    DB = os.environ["APP_DB"]

    @app.get("/customers/<int:cid>/orders")
    def orders(cid):
        con = sqlite3.connect(DB)
        rows = con.execute("SELECT id, amount FROM orders WHERE customer_id = ?", (cid,)).fetchall()
        con.close()
        return jsonify(len(rows))

    @app.get("/latest")
    def latest():
        con = sqlite3.connect(DB)
        ids = [r[0] for r in con.execute("SELECT customer_id FROM orders ORDER BY id DESC LIMIT ?", (N,))]
        names = [con.execute("SELECT name FROM customers WHERE id = ?", (i,)).fetchone() for i in ids]
        con.close()
        return jsonify(len(names))

    @app.get("/health")
    def health():
        return "ok"

    N = N_PLUS_ONE

    if __name__ == "__main__":  # the werkzeug development server, threaded
        app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
    """.replace("N_PLUS_ONE", str(N_PLUS_ONE))
)

EXECUTOR_APP = textwrap.dedent(
    """
    import asyncio, os, sqlite3, sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    def count(cid):
        con = sqlite3.connect(os.environ["APP_DB"])
        n = con.execute("SELECT count(*) FROM orders WHERE customer_id = ?", (cid,)).fetchone()[0]
        con.close()
        return n

    async def orders(request):  # the SQL runs in the loop's default thread pool
        loop = asyncio.get_running_loop()
        n = await loop.run_in_executor(None, count, int(request.path_params["cid"]))
        return PlainTextResponse(str(n))

    async def health(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/customers/{cid:int}/orders", orders), Route("/health", health)])

    if __name__ == "__main__":
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)

STACKS = {
    "gunicorn-sync": lambda port: [str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}", "app:app"],
    "gunicorn-gthread": lambda port: [str(BIN / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "4",
                                      "-b", f"127.0.0.1:{port}", "app:app"],
    "werkzeug-threaded": lambda port: [sys.executable, "app.py", str(port)],
}

LOCUSTFILE = textwrap.dedent(
    """
    from locust import FastHttpUser, HttpUser, constant, task

    class Named(FastHttpUser):
        wait_time = constant(0.02)

        @task(3)
        def orders(self):
            self.client.get(f"/customers/{self.environment.runner.user_count % 7 + 1}/orders", name="orders by customer")

        @task
        def latest(self):
            self.client.get("/latest")  # no name: recorded under its path

    class Requests(HttpUser):
        wait_time = constant(0.02)

        @task
        def orders(self):
            self.client.get("/customers/3/orders", name="orders (requests client)")
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);"
                      "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL);")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"c{i}") for i in range(1, 51)])
    con.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 50 + 1, i * 1.5) for i in range(1, 2001)])
    con.commit()
    con.close()


@contextmanager
def serve(tmp_path: Path, source: str, command: list[str]) -> Iterator[str]:
    """Start the app with the capture injected; yield its URL; stop it (the whole group)."""
    (tmp_path / "app.py").write_text(source)
    db = tmp_path / "app.db"
    seed(db)
    env = {**os.environ, "APP_DB": str(db), **capture_env(sql_log_dir(tmp_path))}
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{command_port(command)}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app exited: {(tmp_path / 'server.log').read_text()[-1500:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "app did not become ready"
            time.sleep(0.1)
        yield url
        time.sleep(FLUSH_WAIT_S)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
        log.close()


def command_port(command: list[str]) -> int:
    for arg in command:
        if arg.startswith("127.0.0.1:"):
            return int(arg.split(":")[1])
    return int(command[-1])


@pytest.mark.parametrize("stack", list(STACKS))
def test_wsgi_servers_attribute_every_statement_to_its_request_and_name(tmp_path: Path, stack: str) -> None:
    with serve(tmp_path, FLASK_APP, STACKS[stack](free_port())) as url, httpx.Client(base_url=url, timeout=10) as client:
        for cid in (1, 2, 3):  # percent-encoded, as Locust sends a name with spaces
            assert client.get(f"/customers/{cid}/orders", headers={HEADER: "orders%20by%20customer"}).status_code == 200
        assert client.get("/latest").status_code == 200
    frame = add_endpoint_column(read_statements(sql_log_dir(tmp_path)))
    orders = frame.filter(pl.col("sql").str.contains("WHERE customer_id"))
    assert orders.height == 3 and orders["request_id"].n_unique() == 3
    assert orders["request_name"].to_list() == ["orders by customer"] * 3
    assert orders["endpoint"].unique().to_list() == ["orders by customer"]
    assert orders["path"].to_list() == ["/customers/1/orders", "/customers/2/orders", "/customers/3/orders"]
    latest = frame.filter(pl.col("path") == "/latest")  # no header: the path template is its endpoint
    assert latest.height == 1 + N_PLUS_ONE and latest["request_id"].n_unique() == 1
    assert latest["request_name"].is_null().all() and latest["endpoint"].unique().to_list() == ["/latest"]


def test_statements_run_in_an_executor_keep_their_request(tmp_path: Path) -> None:
    port = free_port()
    with serve(tmp_path, EXECUTOR_APP, [sys.executable, "app.py", str(port)]) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        for cid in (4, 5):
            assert client.get(f"/customers/{cid}/orders", headers={HEADER: "orders"}).text == "40"
    frame = read_statements(sql_log_dir(tmp_path)).filter(pl.col("sql").str.contains("customer_id"))
    assert frame.height == 2 and frame["request_id"].n_unique() == 2
    assert frame["request_name"].to_list() == ["orders", "orders"]
    assert frame["route"].unique().to_list() == ["/customers/{cid:int}/orders"]


def test_locust_sends_each_request_name_and_the_capture_files_statements_under_it(tmp_path: Path) -> None:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    target = tmp_path / "target"
    target.mkdir()
    with serve(target, FLASK_APP, STACKS["gunicorn-gthread"](free_port())) as url:
        spec = TargetSpec(name="named", base_url=url, spec_dir=tmp_path,
                          load={"locustfile": str(locustfile), "users": 2, "spawn_rate": 20,
                                "duration_s": 2, "warmup_s": 0.5})
        result = run_load_test(spec, url, tmp_path / "work", label="named")
    samples = set(result.samples["endpoint"].unique().to_list())
    assert {"orders by customer", "orders (requests client)", "/latest"} <= samples
    frame = add_endpoint_column(read_statements(sql_log_dir(target)))
    orders = frame.filter(pl.col("sql").str.contains("WHERE customer_id"))
    assert orders.height > 10 and orders["request_id"].null_count() == 0
    assert set(orders["endpoint"].unique().to_list()) == {"orders by customer", "orders (requests client)"}
    latest = frame.filter(pl.col("path") == "/latest")
    assert latest.height > 0 and latest["request_name"].is_null().all()
