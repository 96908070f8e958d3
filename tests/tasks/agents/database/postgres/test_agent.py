"""The database agent's PostgreSQL path on a real throwaway cluster (pg_stat_statements, HypoPG).

Two windows on one database with a 200k-row table: first without HypoPG and without DDL
(explain-estimate, no candidate), then with DDL allowed (the agent creates HypoPG and proposes
indexes). Then the enterprise API on PostgreSQL under a real Locust run.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import psycopg
import pytest

from tasks.agents.base import AgentContext
from tasks.agents.database.agent import DatabaseAgent
from tasks.agents.database.postgres.plan import filter_columns, find_seq_scans, sort_columns
from tasks.db.postgres import describe_error
from tasks.db.redact import strip_password, url_password
from tasks.errors import TransientError
from tasks.findings import Finding
from tasks.spec import TargetSpec

_support_spec = importlib.util.spec_from_file_location(
    "perfagents_pg_test_support", Path(__file__).with_name("pg_test_support.py"))
support = importlib.util.module_from_spec(_support_spec)
_support_spec.loader.exec_module(support)
create_database, database_dsn = support.create_database, support.database_dsn

pytestmark = [pytest.mark.timeout(180)]

N_ORDERS = 200_000
N_CUSTOMERS = 5_000
FILTER_CALLS = 80
PAGE_CALLS = 30
LOOKUP_CALLS = 100
REGION_CALLS = 20
PASSWORD = "s3cr:et@pw/9f"  # trust auth ignores it; it must never show up anywhere
ENDPOINTS = [{"name": "customer_orders", "path": "/api/orders?customer={int:1:20000}"},
             {"name": "customer_lookup", "path": "/api/customers?email={str}"}]


def hypopg_available(dsn: str) -> bool:
    with psycopg.connect(dsn) as con:
        return con.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone() is not None


def seed_shop(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("SELECT setseed(0.42)")
        con.execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, "
                    "created_at timestamptz NOT NULL, amount numeric(10, 2) NOT NULL)")
        con.execute("INSERT INTO orders SELECT g, 1 + (random() * 19999)::int, (ARRAY['open', 'paid', 'void'])[1 + g %% 3], "
                    "timestamptz '2023-01-01' + random() * interval '700 days', round((random() * 1000)::numeric, 2) "
                    "FROM generate_series(1, %s) g", [N_ORDERS])
        con.execute("CREATE INDEX orders_amount_idx ON orders (amount)")  # nothing in the workload uses it
        con.execute("CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, region text NOT NULL)")
        con.execute("INSERT INTO customers SELECT g, 'c' || g || '@example.com', (ARRAY['eu', 'us', 'ap'])[1 + g %% 3] "
                    "FROM generate_series(1, %s) g", [N_CUSTOMERS])
        con.execute("CREATE INDEX customers_email_idx ON customers (email)")  # used by the lookups
        con.execute("ANALYZE")


def run_workload(dsn: str) -> None:
    """A few hundred statements with bind parameters; the counts are the module constants."""
    with psycopg.connect(dsn, autocommit=True) as con:
        for i in range(FILTER_CALLS):
            con.execute("SELECT id, amount FROM orders WHERE customer_id = %s", [1 + i * 37]).fetchall()
        for i in range(PAGE_CALLS):
            con.execute("SELECT id, created_at FROM orders ORDER BY created_at, id LIMIT 50 OFFSET %s",
                        [10_000 + 50 * i]).fetchall()
        for i in range(LOOKUP_CALLS):
            con.execute("SELECT id, region FROM customers WHERE email = %s", [f"c{1 + i}@example.com"]).fetchall()
        for i in range(REGION_CALLS):
            con.execute("SELECT count(*) FROM customers WHERE region = %s", [("eu", "us", "ap")[i % 3]]).fetchall()


@dataclass
class PgWindow:
    ctx: AgentContext
    observed: dict[str, Any]
    findings: list[Finding]
    url: str

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def statement(self, fragment: str) -> dict[str, Any]:
        return next(s for s in self.observed["statements"] if fragment in s["statement"])


def profile_window(url: str, workdir: Path, *, allow_ddl: bool, drive, samples: pl.DataFrame | None = None,
                   spec: TargetSpec | None = None, window_s: float = 30) -> PgWindow:
    """Run the real agent in a thread; drive load once its first snapshot is taken; stop; findings."""
    spec = spec or TargetSpec(name="pg-shop", base_url="http://127.0.0.1:1",
                              database={"url": url, "allow_ddl": allow_ddl},
                              load={"warmup_s": 0, "endpoints": ENDPOINTS})
    ctx = AgentContext(spec=spec, base_url=spec.base_url, workdir=workdir, window_s=window_s, database_url=url)
    agent, observed, result = support.profile_during(ctx, drive)
    if samples is None:
        samples = result if isinstance(result, pl.DataFrame) else pl.DataFrame({"endpoint": []}, schema={"endpoint": pl.Utf8})
    return PgWindow(ctx, observed, agent.findings(ctx, observed, samples), url)


@pytest.fixture(scope="module")
def shop(pg_cluster: str) -> str:
    dsn = create_database(pg_cluster, "agent_shop")
    seed_shop(dsn)
    return dsn


@pytest.fixture(scope="module")
def windows(shop: str, pg_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PgWindow]:
    url = database_dsn(pg_cluster, "agent_shop", password=PASSWORD)
    work = tmp_path_factory.mktemp("pg-agent")
    estimate = profile_window(url, work, allow_ddl=False, drive=lambda: run_workload(shop))
    hypopg = profile_window(url, work, allow_ddl=True, drive=lambda: run_workload(shop))
    return {"estimate": estimate, "hypopg": hypopg}


def by_location(window: PgWindow, kind: str) -> dict[str, Finding]:
    return {f.location: f for f in window.of_kind(kind)}


@pytest.mark.postgres
def test_deltas_count_exactly_the_window(windows):
    for w in windows.values():  # the second window's deltas exclude the first's (cumulative counters)
        assert w.statement("customer_id = $1")["calls"] == FILTER_CALLS
        assert w.statement("ORDER BY created_at, id")["calls"] == PAGE_CALLS
        assert w.statement("WHERE email = $1")["calls"] == LOOKUP_CALLS
        assert w.statement("WHERE region = $1")["calls"] == REGION_CALLS
        assert w.observed["statements_captured"] == FILTER_CALLS + PAGE_CALLS + LOOKUP_CALLS + REGION_CALLS
        filt = w.statement("customer_id = $1")
        assert filt["rows"] > 0 and filt["mean_ms"] == pytest.approx(filt["total_ms"] / FILTER_CALLS, rel=1e-3)
        assert filt["shared_blks_hit"] + filt["shared_blks_read"] > 0
        orders = next(t for t in w.observed["tables"] if t["table"] == "orders")
        assert orders["seq_scan"] >= FILTER_CALLS + PAGE_CALLS and orders["seq_tup_read"] >= FILTER_CALLS * N_ORDERS
        resources = w.observed["resources"]
        assert resources["blks_hit"] > 0 and 0 < resources["hit_ratio"] <= 1 and resources["temp_files"] >= 0


@pytest.mark.postgres
def test_missing_indexes_with_generic_plans_and_hypopg_whatif(windows):
    w = windows["hypopg"]
    if not hypopg_available(w.url):
        pytest.skip("HypoPG not installed (apt-get install postgresql-15-hypopg)")
    assert w.observed["hypopg"].startswith("created")
    found = by_location(w, "missing_index")
    assert {"orders.customer_id", "orders.created_at"} <= set(found)
    assert not any(loc.startswith("customers") or "amount" in loc for loc in found)  # small table / no filter
    filt, page = found["orders.customer_id"], found["orders.created_at"]
    assert any("Seq Scan on orders" in line and "customer_id = $1" in line
               for lines in filt.evidence["plan"].values() for line in lines)
    assert any("Sort Key: orders.created_at, orders.id" in line for lines in page.evidence["plan"].values() for line in lines)
    assert page.evidence["basis"] == "sort" and filt.evidence["basis"] == "filter"
    for f in (filt, page):
        whatif = f.evidence["whatif"]
        assert whatif["method"] == "hypopg" and "not a timing" in whatif["basis"]
        assert whatif["index_used"] and whatif["cost_after"] < whatif["cost_before"] / 2
        assert any("btree_orders" in line for lines in f.evidence["plans_with_index"].values() for line in lines)
        assert f.endpoint == "customer_orders" and f.candidate is not None
    assert filt.candidate.params == {"table": "orders", "columns": ["customer_id"], "name": "perfagents_orders_customer_id"}
    assert page.candidate.params["columns"] == ["created_at"]  # the id tie-breaker is the primary key
    assert filt.candidate.kind == "create_index" and 0 < filt.candidate.expected_gain < 1
    with psycopg.connect(w.url) as con:  # the what-if left no index behind, and no extension
        names = {r[0] for r in con.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")}
        extensions = {r[0] for r in con.execute("SELECT extname FROM pg_extension")}
    assert names == {"orders_pkey", "orders_amount_idx"}
    assert "hypopg" not in extensions and "rolled back" in w.observed["hypopg"]


@pytest.mark.postgres
def test_without_hypopg_the_whatif_is_a_labelled_estimate(windows):
    w = windows["estimate"]
    assert "allow_ddl is false" in w.observed["hypopg"]
    found = by_location(w, "missing_index")
    assert {"orders.customer_id", "orders.created_at"} <= set(found)
    for f in found.values():
        assert f.evidence["whatif"]["method"] == "explain-estimate" and f.estimated_gain["method"] == "explain-estimate"
        assert "estimate" in f.estimated_gain["basis"] and f.evidence["whatif"]["index_used"] is None
        assert f.candidate is None  # DDL not allowed: a finding, no change


@pytest.mark.postgres
def test_unused_and_slow(windows):
    w = windows["hypopg"]
    unused = by_location(w, "unused_index")
    assert set(unused) == {"orders.amount"}  # the used email index and the primary keys are not flagged
    assert unused["orders.amount"].evidence["index"] == "orders_amount_idx"
    slow = [f for f in w.of_kind("slow_query") if "customer_id" in f.evidence["statement"]]
    assert slow and slow[0].location == "orders" and slow[0].evidence["plan"]


@pytest.mark.postgres
def test_password_never_reaches_observations_or_findings(windows):
    for w in windows.values():
        assert url_password(w.url) == PASSWORD
        text = json.dumps(w.observed, default=str) + json.dumps([f.to_dict() for f in w.findings], default=str)
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text
        assert w.observed["database"] == strip_password(w.url)


@pytest.mark.postgres
def test_unreachable_database_is_a_transient_error_without_password(pg_cluster, tmp_path):
    url = database_dsn(pg_cluster, "no_such_db", password=PASSWORD)
    spec = TargetSpec(name="x", base_url="http://127.0.0.1:1", database={"url": url}, load={"endpoints": ENDPOINTS})
    ctx = AgentContext(spec=spec, base_url=spec.base_url, workdir=tmp_path, window_s=1, database_url=url)
    with pytest.raises(TransientError) as err:
        DatabaseAgent().profile(ctx)
    assert "no_such_db" in str(err.value) and PASSWORD not in str(err.value)


def test_strip_password_and_scrub():
    assert strip_password("postgresql://app:s3cret@h:5432/db?sslmode=require&password=x") == \
        "postgresql://app@h:5432/db?sslmode=require"
    assert strip_password("postgresql://h/db") == "postgresql://h/db"
    assert url_password("postgresql://app:a%40b@h/db") == "a@b"
    assert describe_error(ValueError("FATAL: bad a@b and a%40b\nDETAIL"), "postgresql://app:a%40b@h/db") == \
        "FATAL: bad *** and ***"


def test_filter_and_sort_columns_from_plan_text():
    cols = {"status", "created_at", "Odd Col", "id"}
    assert filter_columns("((o.created_at >= $2) AND (o.status = $1))", "o", cols) == (["status"], ["created_at"])
    assert filter_columns("((o.status)::text = ANY ($1))", "o", cols) == (["status"], [])
    assert filter_columns('(o."Odd Col" = $1)', "o", cols) == (["Odd Col"], [])
    assert filter_columns("((o.status = $1) OR (o.id = $2))", "o", cols) == ([], [])  # an OR: no single index
    assert filter_columns("(x.status = $1)", "o", cols) == ([], [])  # another relation's column
    assert filter_columns("(o.status <> $1)", "o", cols) == ([], [])
    assert filter_columns("($1 < o.created_at)", "o", cols) == ([], ["created_at"])
    scan = {"Node Type": "Seq Scan"}
    sort = {"Node Type": "Sort", "Sort Key": ["o.created_at DESC", "o.id DESC"]}
    assert sort_columns(scan, (sort, {"Node Type": "Limit"}), "o", cols) == ["created_at", "id"]
    assert sort_columns(scan, (sort,), "o", cols) == []  # no Limit: the index would not spare the sort
    mixed = {"Node Type": "Sort", "Sort Key": ["o.created_at", "o.id DESC"]}
    assert sort_columns(scan, (mixed, {"Node Type": "Limit"}), "o", cols) == []


def test_seq_scans_of_small_tables_are_ignored():
    root = {"Node Type": "Seq Scan", "Relation Name": "t", "Schema": "public", "Alias": "t",
            "Startup Cost": 0.0, "Total Cost": 10.0, "Plan Rows": 1, "Filter": "(t.a = $1)"}
    small = {"rows": 500.0, "columns": ["a"], "primary_key": []}
    assert find_seq_scans(root, lambda s, t: small) == []
    large = dict(small, rows=1e6)
    assert [c.columns for c in find_seq_scans(root, lambda s, t: large)] == [("a",)]


E2E_USERS = 8
E2E_DURATION_S = 12
E2E_WARMUP_S = 2


@pytest.mark.postgres
def test_enterprise_api_planted_indexes_end_to_end(pg_cluster, tmp_path):
    """The real API on PostgreSQL, a real Locust run: the two planted missing indexes are found."""
    from reference_workflows.enterprise_api.launch import running_app
    from reference_workflows.enterprise_api.seed import seed_database
    from tasks.load.runner import run_load_test
    from tasks.spec import load_spec

    dsn = create_database(pg_cluster, "enterprise")
    assert seed_database(dsn, scale=0.2)["invoices"] == 60_000
    spec = load_spec("enterprise-api", database_url=dsn)
    spec = spec.model_copy(update={"load": spec.load.model_copy(
        update={"users": E2E_USERS, "spawn_rate": E2E_USERS, "duration_s": E2E_DURATION_S, "warmup_s": E2E_WARMUP_S})})
    with running_app(dsn, {"API_POOL_SIZE": "4", "API_AUTH_CACHE_TTL_S": "60"}, log_dir=tmp_path) as app:
        spec = spec.model_copy(update={"base_url": app.base_url})
        w = profile_window(dsn, tmp_path, allow_ddl=True, spec=spec, window_s=E2E_DURATION_S + E2E_WARMUP_S,
                           drive=lambda: run_load_test(spec, app.base_url, tmp_path / "load", label="pg").samples)
    assert w.observed["warmup_excluded"] and w.observed["statements_captured"] > 100
    found = by_location(w, "missing_index")
    assert {"invoices.created_at", "invoices.issued_on"} <= set(found), sorted(found)
    listing, report = found["invoices.created_at"], found["invoices.issued_on"]
    assert any("ORDER BY created_at, id" in s for s in listing.evidence["statements"])
    assert any("issued_on >= $1" in s for s in report.evidence["statements"])
    method = "hypopg" if hypopg_available(dsn) else "explain-estimate"
    for f in (listing, report):
        assert f.evidence["whatif"]["method"] == method and f.evidence["whatif"]["index_used"] in (True, None)
        assert any("Seq Scan on invoices" in line for lines in f.evidence["plan"].values() for line in lines)
        assert f.candidate is not None and f.candidate.params["table"] == "invoices"
        # invoices_page, invoices_deep and create_invoice all name the table: no single endpoint
        assert f.endpoint is None and f.evidence["endpoint_attribution"].startswith("none")
    assert not by_location(w, "unused_index")  # the seed has only constraint indexes
