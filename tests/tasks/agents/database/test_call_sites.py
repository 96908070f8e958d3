"""Call sites of captured statements: real interpreters with the capture injected, and the real shop.

The e-commerce reference target runs its planted N+1 (``catalog.fetch_reviews_n_plus_one``)
through its own wrapper (``db.Database.query``): the database agent must locate the finding
at the looping function, not at the wrapper nor at the endpoint.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from reference_workflows.ecommerce.seed import seed_database
from reference_workflows.ecommerce.shop_process import running_shop
from tasks.agents.base import AgentContext
from tasks.agents.database.agent import DatabaseAgent
from tasks.agents.database.call_sites import (
    call_site_of,
    find_call_sites,
    frame_function,
    leading_keywords,
    read_call_sites,
    statement_location,
)
from tasks.agents.database.sql.stats import add_statement_columns
from tasks.agents.database.sqlcapture import ENV_VAR, INJECT_DIR, capture_env, read_statements
from tasks.spec import load_spec

RUN_TIMEOUT_S = 60
PROFILE_TIMEOUT_S = 60
SHOP_SCALE = 0.05
N_PLUS_ONE_SITE = "reference_workflows.ecommerce.catalog:fetch_reviews_n_plus_one"

APP = textwrap.dedent(
    """
    import sqlite3


    class Db:
        def __init__(self):
            self.con = sqlite3.connect(":memory:")

        def query(self, sql, params=()):
            return self.con.execute(sql, params).fetchall()

        def write(self, sql, params=()):
            return self.con.execute(sql, params).rowcount


    def setup(db):
        db.write("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.write("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER)")
        db.write("CREATE TABLE log (what TEXT)")
        for i in range(1, 21):
            db.write("INSERT INTO users VALUES (?, ?)", (i, "u%d" % i))
            db.write("INSERT INTO orders VALUES (?, ?)", (i, i))


    def user_names(db, ids):
        return [db.query("SELECT name FROM users WHERE id = ?", (i,))[0][0] for i in ids]


    def audit(db, what):
        db.write("INSERT INTO log VALUES (?)", (what,))


    def latest_orders(db):
        audit(db, "latest")
        rows = db.query("SELECT id, user_id FROM orders ORDER BY id DESC LIMIT 10")
        return user_names(db, [uid for _, uid in rows])


    def count_users(db):
        audit(db, "count")
        return db.query("SELECT count(*) FROM users")[0][0]


    def report(db):
        audit(db, "report")
        return db.query("SELECT user_id, count(*) FROM orders GROUP BY user_id")
    """
)
MAIN = textwrap.dedent(
    """
    import shopapp

    db = shopapp.Db()
    shopapp.setup(db)
    for _ in range(20):
        shopapp.latest_orders(db)
        shopapp.count_users(db)
        shopapp.report(db)
    """
)


def capture_module() -> Any:
    """The injected capture module itself (its constants), loaded from its file: it installs nothing on import."""
    spec = importlib.util.spec_from_file_location("perfagents_sqlcapture_constants", INJECT_DIR / "perfagents_sqlcapture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_captured(tmp_path: Path, main: str = MAIN) -> Path:
    (tmp_path / "shopapp.py").write_text(APP)
    (tmp_path / "main.py").write_text(main)
    log_dir = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", ENV_VAR)}
    env.update(capture_env(log_dir, {}))
    done = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return log_dir


def test_stacks_are_kept_for_the_first_executions_only(tmp_path):
    frame = read_statements(run_captured(tmp_path))
    names = frame.filter(pl.col("sql") == "SELECT name FROM users WHERE id = ?")
    assert names.height == 200 and names["stack"].is_not_null().sum() == capture_module().PARAMS_PER_SQL
    stack = names["stack"].drop_nulls()[0].to_list()
    # innermost first; the list comprehension folds into user_names; no sqlite3, capture or stdlib frame
    assert [frame_function(e) for e in stack] == ["shopapp:Db.query", "shopapp:user_names", "shopapp:latest_orders",
                                                 "__main__:<module>"]
    loop_line = APP.splitlines().index("def user_names(db, ids):") + 2  # 1-based, the line after the def
    assert stack[1] == f"shopapp:user_names:{loop_line}"


def test_call_site_skips_the_shared_wrappers(tmp_path):
    sites = find_call_sites(add_statement_columns(read_statements(run_captured(tmp_path))))
    assert sites["SELECT name FROM users WHERE id = ?"]["call_site"] == "shopapp:user_names"
    assert sites["SELECT count(*) FROM users"]["call_site"] == "shopapp:count_users"
    assert "shopapp:Db.query" in sites["SELECT name FROM users WHERE id = ?"]["shared_frames"]
    # a helper running its own one statement from three places is where that statement belongs
    assert call_site_of(sites, "INSERT INTO log VALUES (?)")["call_site"] == "shopapp:audit"
    assert call_site_of(sites, "CREATE TABLE log (what TEXT)")["call_site"] == "shopapp:setup"


def test_a_statement_run_from_two_places_keeps_the_commonest_stack(tmp_path):
    main = MAIN + "\nfor _ in range(3):\n    shopapp.user_names(db, [1])\n"
    sites = find_call_sites(add_statement_columns(read_statements(run_captured(tmp_path, main))))
    name = sites["SELECT name FROM users WHERE id = ?"]
    assert name["call_site"] == "shopapp:user_names"
    assert frame_function(name["stack"][2]) == "shopapp:latest_orders"  # the 8 captured: all via latest_orders


@pytest.mark.parametrize(("statement", "expected"), [
    ("COMMIT", "COMMIT"), ("BEGIN IMMEDIATE", "BEGIN IMMEDIATE"), ("begin", "BEGIN"),
    ("SELECT pg_sleep($1)", "SELECT"), ("SAVEPOINT sp_1", "SAVEPOINT"), ("RELEASE SAVEPOINT sp_1", "RELEASE SAVEPOINT"),
])
def test_leading_keywords_name_a_statement_without_tables(statement, expected):
    assert leading_keywords(statement) == expected


def test_statement_location_prefers_tables_then_call_site_then_keywords():
    assert statement_location(["orders"], "shop:checkout", "SELECT 1 FROM orders") == "orders"
    assert statement_location([], "shop.db:_Transaction.__exit__", "COMMIT") == "shop.db:_Transaction.__exit__"
    assert statement_location([], None, "COMMIT") == "COMMIT"
    assert statement_location([], None, "") != "sql"


def drive_shop(base: str) -> list[dict[str, Any]]:
    """Sequential requests under the locustfile's names; their samples."""
    rows = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(1, 6):
            for name, method, path, body in (
                ("home", "GET", "/", None),
                ("catalog", "GET", f"/api/products?page={i}", None),
                ("catalog", "GET", f"/api/products?category={i}", None),
                ("product", "GET", f"/api/products/{i}", None),
                ("product_page", "GET", f"/products/{i}", None),
                ("search", "GET", "/api/search?q=red", None),
                ("customer_orders", "GET", f"/api/customers/{i}/orders", None),
                ("cart_add", "POST", "/api/cart/items", {"customer_id": i, "product_id": i, "quantity": 1}),
                ("checkout", "POST", "/api/checkout", {"customer_id": i}),
            ):
                ts, t0 = time.time(), time.perf_counter()
                response = client.request(method, path, json=body)
                assert response.status_code in (200, 201), (path, response.status_code)
                rows.append({"ts": ts, "endpoint": name, "method": method,
                             "latency_ms": (time.perf_counter() - t0) * 1000})
    return rows


def test_shop_n_plus_one_is_located_at_the_looping_function(tmp_path):
    db = tmp_path / "shop.db"
    seed_database(db, scale=SHOP_SCALE)
    agent = DatabaseAgent()
    spec = load_spec("ecommerce")
    spec = spec.model_copy(update={"load": spec.load.model_copy(update={"warmup_s": 0})})
    with running_shop(db, agent.target_env(tmp_path), tmp_path / "shop.log") as shop:
        ctx = AgentContext(spec=spec, base_url=shop.url, workdir=tmp_path, window_s=20, database_url=f"sqlite:///{db}")
        observed: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: observed.update(agent.profile(ctx)), daemon=True)
        thread.start()
        try:
            samples = pl.DataFrame(drive_shop(shop.url))
        finally:
            ctx.stop.set()
            thread.join(PROFILE_TIMEOUT_S)
    assert not thread.is_alive() and observed, "profile failed or did not return"
    findings = agent.findings(ctx, observed, samples)
    n_plus_one = [f for f in findings if f.kind == "n_plus_one"]
    assert {f.endpoint for f in n_plus_one} == {"product", "product_page"}, [(f.location, f.endpoint) for f in findings]
    for found in n_plus_one:
        assert found.location == N_PLUS_ONE_SITE  # not the wrapper db:Database.query, not the endpoint
        assert found.evidence["statement"] == "SELECT name FROM customers WHERE id = ?"
        assert frame_function(found.evidence["stack"][0]) == "reference_workflows.ecommerce.db:Database.query"
        assert frame_function(found.evidence["stack"][1]) == N_PLUS_ONE_SITE
    assert all(f.location != "sql" for f in findings)
    # the transaction's COMMIT has no table: its call site is the shop's transaction context manager
    sites = read_call_sites(tmp_path / "sql")
    assert sites["COMMIT"]["call_site"] == "reference_workflows.ecommerce.db:_Transaction.__exit__"
    assert sites["BEGIN IMMEDIATE"]["call_site"] == "reference_workflows.ecommerce.db:_Transaction.__enter__"
