"""EXPLAIN parsing, index candidates, the measured what-if and unused indexes on real SQLite files."""

from __future__ import annotations

import hashlib
import sqlite3
import time

import pytest

from tasks.agents.database.sqlite.plan import (
    copy_database,
    explain_plan,
    find_full_scans,
    find_unused_indexes,
    index_columns,
    whatif_index,
)
from tasks.agents.database.sqlite.util import (
    checked_table,
    connect_readonly,
    database_file,
    quote_ident,
)
from tasks.errors import RefusedError


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.db"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INT, status TEXT, amount REAL);
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, "odd""col" TEXT);
        CREATE INDEX idx_used ON orders(status);
        CREATE INDEX idx_unused ON users(name);
        CREATE UNIQUE INDEX idx_unique ON users("odd""col");
        """
    )
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                    [(i, i % 500, f"s{i % 7}", i * 0.5) for i in range(30_000)])
    con.executemany("INSERT INTO users VALUES (?, ?, ?)", [(i, f"u{i}", f"o{i}") for i in range(500)])
    con.commit()
    con.close()
    return path


def test_full_scan_resolves_aliases_and_columns(db):
    con = connect_readonly(db)
    sql = "SELECT * FROM orders o WHERE o.user_id = ? AND o.amount > ?"
    plan = explain_plan(con, sql, (3, 1.0))
    (scan,) = find_full_scans(con, sql, plan)
    assert scan.table == "orders" and plan == ["SCAN o"]
    assert index_columns(con, sql, scan) == ["user_id", "amount"]
    assert find_full_scans(con, "SELECT * FROM orders WHERE status = ?", explain_plan(con, "SELECT * FROM orders WHERE status = ?")) == []


def test_automatic_index_is_a_candidate(db):
    con = connect_readonly(db)
    sql = "SELECT * FROM users u, orders o WHERE o.user_id = u.id AND u.name = 'u1'"
    plan = explain_plan(con, sql)
    scans = find_full_scans(con, sql, plan)
    assert any("user_id" in index_columns(con, sql, s) for s in scans), plan


def test_whatif_measures_on_a_copy_only(db, tmp_path):
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    copy = copy_database(db, tmp_path / "whatif")
    instances = [("SELECT * FROM orders WHERE user_id = ?", (k,)) for k in (1, 2, 3)]
    w = whatif_index(copy, "orders", ["user_id"], instances, time.monotonic() + 30)
    assert w.index_used and w.after_ms < w.before_ms and w.ratio > 2
    assert w.name == "perfagents_orders_user_id" and w.plans_after[0][0].startswith("SEARCH orders USING INDEX")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    con = sqlite3.connect(copy)
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = ?", [w.name]).fetchone()[0] == 0
    con.close()


def test_whatif_rolls_back_writes(db, tmp_path):
    copy = copy_database(db, tmp_path / "whatif")
    whatif_index(copy, "orders", ["user_id"], [("DELETE FROM orders WHERE user_id = ?", (1,))])
    con = sqlite3.connect(copy)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 30_000
    con.close()


def test_unused_indexes_exclude_used_and_unique(db):
    con = connect_readonly(db)
    plans = [explain_plan(con, "SELECT * FROM orders WHERE status = ?")]
    assert [i.name for i in find_unused_indexes(con, plans)] == ["idx_unused"]


def test_identifiers_are_quoted_after_checking(db):
    con = connect_readonly(db)
    assert quote_ident('odd"col') == '"odd""col"'
    assert checked_table(con, "users", ['odd"col']) == ('"users"', ['"odd""col"'])
    with pytest.raises(RefusedError, match="no column"):
        checked_table(con, "users", ["nope"])
    with pytest.raises(RefusedError, match="does not exist"):
        checked_table(con, "nope; DROP TABLE users", [])


def test_database_file_forms(tmp_path):
    assert str(database_file("sqlite:////abs/x.db")) == "/abs/x.db"
    assert database_file("sqlite:///rel.db", tmp_path) == (tmp_path / "rel.db").resolve()
