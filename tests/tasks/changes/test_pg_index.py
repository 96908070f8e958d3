"""Index changes on a real throwaway PostgreSQL cluster: CONCURRENTLY, lock timeout, journal, quoting."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tasks.changes import CHANGE_KINDS, pg_index
from tasks.changes.journal import apply_candidate, open_changes, plan_change, revert_pending
from tasks.changes.runtime import Runtime
from tasks.db.redact import strip_password
from tasks.errors import RefusedError, TransientError
from tasks.findings import Candidate
from tasks.spec import TargetSpec

pytestmark = [pytest.mark.timeout(120)]

N_ROWS = 50_000
PASSWORD = "pa:ss@w0rd/x"  # trust auth ignores it; it must never show up in undo rows or errors
ODD_COLUMN = 'odd "col"; x'
INDEX = "perfagents_orders_customer_id"
apply_create_index, revert_create_index = CHANGE_KINDS["create_index"].apply, CHANGE_KINDS["create_index"].revert


def with_db(dsn: str, name: str, password: str | None = None) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc if password is None else parts.netloc.replace("@", f":{quote(password, safe='')}@", 1)
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))


@pytest.fixture(scope="module")
def db(pg_cluster: str) -> str:
    """A database with a 50k-row ``orders`` table (one oddly named column); its URL has a password."""
    with psycopg.connect(with_db(pg_cluster, "postgres"), autocommit=True) as con:
        con.execute("DROP DATABASE IF EXISTS changes_shop")
        con.execute("CREATE DATABASE changes_shop")
    plain = with_db(pg_cluster, "changes_shop")
    with psycopg.connect(plain, autocommit=True) as con:
        con.execute(sql.SQL("CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, {} int)")
                    .format(sql.Identifier(ODD_COLUMN)))
        con.execute("INSERT INTO orders SELECT g, g %% 5000, g %% 7 FROM generate_series(1, %s) g", [N_ROWS])
        con.execute("ANALYZE orders")
    return with_db(pg_cluster, "changes_shop", PASSWORD)


def runtime(url: str, tmp_path: Path, allow_ddl: bool = True) -> Runtime:
    spec = TargetSpec(name="t", base_url="http://127.0.0.1:1", load={"endpoints": [{"name": "a", "path": "/"}]},
                      database={"url": url, "allow_ddl": allow_ddl})
    return Runtime(spec=spec, workdir=tmp_path, handle=None, config={}, database_url=url)  # type: ignore[arg-type]


def index_valid(url: str, name: str) -> bool | None:
    with psycopg.connect(url) as con:
        row = con.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                          "WHERE c.relname = %s", [name]).fetchone()
    return None if row is None else row[0]


def plan_of(url: str, query: str) -> str:
    with psycopg.connect(url) as con:
        return "\n".join(r[0] for r in con.execute("EXPLAIN " + query).fetchall())


@pytest.mark.postgres
def test_journaled_apply_and_crash_revert(db, tmp_path, store):
    candidate = Candidate(kind="create_index", description="index orders.customer_id",
                          params={"table": "orders", "columns": ["customer_id"], "name": INDEX})
    change_id = plan_change(store, "run-1", "t", 1, candidate)
    undo = apply_candidate(store, runtime(db, tmp_path), change_id, candidate)
    assert undo == {"database_url": strip_password(db), "index": INDEX, "schema": "public"}
    assert index_valid(db, INDEX) is True
    assert INDEX in plan_of(db, "SELECT * FROM orders WHERE customer_id = 42")
    rows = open_changes(store)
    assert [r["status"] for r in rows] == ["applied"]
    assert PASSWORD not in json.dumps(rows, default=str) and quote(PASSWORD, safe="") not in json.dumps(rows, default=str)
    done = revert_pending(store)  # as after a crash: no runtime, the journal's undo alone
    assert [note for _, note in done] == [f"dropped index {INDEX}"]
    assert index_valid(db, INDEX) is None and not open_changes(store)
    assert "Seq Scan" in plan_of(db, "SELECT * FROM orders WHERE customer_id = 42")


@pytest.mark.postgres
def test_identifiers_are_quoted_and_hostile_names_refused(db, tmp_path):
    rt = runtime(db, tmp_path)
    undo = apply_create_index(rt, {"table": "orders", "columns": [ODD_COLUMN], "name": "perfagents_orders_odd"})
    with psycopg.connect(db) as con:
        (definition,) = con.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'perfagents_orders_odd'").fetchone()
    assert '("odd ""col""; x")' in definition
    assert revert_create_index(rt, undo) == "dropped index perfagents_orders_odd"
    hostile = [
        ({"table": "orders", "columns": ["customer_id); DROP TABLE orders; --"], "name": "perfagents_x"}, "no column"),
        ({"table": "orders; DROP TABLE orders", "columns": ["id"], "name": "perfagents_x"}, "does not exist"),
        ({"table": "orders", "columns": ["id"], "name": 'x"; DROP TABLE orders; --'}, "must be"),
        ({"table": "orders", "columns": [], "name": "perfagents_x"}, "non-empty"),
    ]
    for params, message in hostile:
        with pytest.raises(RefusedError, match=message):
            apply_create_index(rt, params)
    with pytest.raises(RefusedError, match="allow DDL"):
        apply_create_index(runtime(db, tmp_path, allow_ddl=False), {"table": "orders", "columns": ["id"], "name": "p_x"})
    with psycopg.connect(db) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == N_ROWS
        assert con.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'").fetchone()[0] == 1


@pytest.mark.postgres
def test_existing_index_is_refused(db, tmp_path):
    rt = runtime(db, tmp_path)
    params = {"table": "orders", "columns": ["customer_id"], "name": "perfagents_twice"}
    undo = apply_create_index(rt, params)
    try:
        with pytest.raises(RefusedError, match="already exists"):
            apply_create_index(rt, params)
    finally:
        revert_create_index(None, undo)
    assert index_valid(db, "perfagents_twice") is None


@pytest.mark.postgres
def test_a_crash_before_apply_does_not_drop_an_index_that_existed(db, tmp_path):
    """Journaled, then killed before apply refused the name: revert leaves the earlier index."""
    rt = runtime(db, tmp_path)
    params = {"table": "orders", "columns": ["customer_id"], "name": "perfagents_kept_before"}
    undo = apply_create_index(rt, params)  # an earlier run kept it
    try:
        provisional = CHANGE_KINDS["create_index"].provisional_undo(rt, params)
        assert provisional.get("existed") is True
        assert "left in place" in CHANGE_KINDS["create_index"].revert(None, provisional)
        assert index_valid(db, "perfagents_kept_before") is True
    finally:
        revert_create_index(None, undo)
    assert CHANGE_KINDS["create_index"].provisional_undo(rt, params).get("existed") is None


@pytest.mark.postgres
def test_lock_timeout_fails_the_build_and_drops_the_invalid_leftover(db, tmp_path, monkeypatch):
    monkeypatch.setattr(pg_index, "LOCK_TIMEOUT", "300ms")
    blocker = psycopg.connect(strip_password(db))
    blocker.execute("UPDATE orders SET customer_id = customer_id WHERE id = 1")  # an open write transaction
    release = threading.Timer(1.5, blocker.rollback)
    release.start()
    started = time.monotonic()
    try:
        with pytest.raises(TransientError) as err:
            apply_create_index(runtime(db, tmp_path), {"table": "orders", "columns": ["customer_id"], "name": "perfagents_blocked"})
    finally:
        release.join()
        blocker.close()
    assert "lock timeout" in str(err.value) and PASSWORD not in str(err.value)
    assert time.monotonic() - started >= 1.0  # the leftover's drop waited for the writer to finish
    assert index_valid(db, "perfagents_blocked") is None  # the INVALID index the build left is gone


@pytest.mark.postgres
def test_unreachable_database_errors_carry_no_password(pg_cluster, tmp_path):
    url = with_db(pg_cluster, "no_such_db", PASSWORD)
    with pytest.raises(TransientError) as err:
        apply_create_index(runtime(url, tmp_path), {"table": "orders", "columns": ["id"], "name": "perfagents_x"})
    assert "no_such_db" in str(err.value) and PASSWORD not in str(err.value)
    with pytest.raises(TransientError) as err:
        revert_create_index(None, {"database_url": strip_password(url), "index": "perfagents_x"})
    assert PASSWORD not in str(err.value)


def test_sqlite_urls_still_go_to_the_sqlite_change(tmp_path):
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER)")
    con.close()
    rt = runtime(f"sqlite:///{db}", tmp_path)
    undo = apply_create_index(rt, {"table": "orders", "columns": ["customer_id"], "name": INDEX})
    assert undo["database_url"].startswith("sqlite:///")
    assert revert_create_index(None, undo) == f"dropped index {INDEX}"
