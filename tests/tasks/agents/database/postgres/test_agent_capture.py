"""psycopg 3 statement capture and endpoint attribution of PostgreSQL findings.

A real throwaway cluster (the session ``pg_cluster``), a real Starlette + psycopg target under
uvicorn started with the capture injected (tasks.agents.database.sqlcapture.capture_env), driven by httpx
while the real database agent profiles the window.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from tasks.agents.base import AgentContext
from tasks.agents.database.agent import DatabaseAgent
from tasks.agents.database.sql.attribution import (
    attribute_time,
    name_statements,
    statements_like,
    statements_using_index,
)
from tasks.agents.database.sql.stats import add_statement_columns
from tasks.agents.database.sqlcapture import ENV_VAR, INJECT_DIR, read_statements, sql_log_dir
from tasks.findings import Finding
from tasks.spec import TargetSpec

pytestmark = [pytest.mark.timeout(120)]

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("perfagents_test_pg_capture_app", HERE / "pg_capture_app.py")
pg_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pg_app)
_support_spec = importlib.util.spec_from_file_location("perfagents_pg_test_support", HERE / "pg_test_support.py")
support = importlib.util.module_from_spec(_support_spec)
_support_spec.loader.exec_module(support)
create_database = support.create_database

ROWS = 100_000
ROUNDS = 8
PROFILE_JOIN_S = 90


def drive(base: str) -> pl.DataFrame:
    """Sequential requests under Locust-style names that are not paths; their samples."""
    rows = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(ROUNDS):
            for name, method, path in (
                ("invoices_page", "GET", f"/invoices?page={1 + i * 200}"),
                ("revenue_report", "GET", f"/report?day=2023-{1 + i % 12:02d}-01"),
                ("invoice_detail", "GET", f"/invoices/{1 + i * 7}"),
                ("add_notes", "POST", "/notes"),
            ):
                ts, t0 = time.time(), time.perf_counter()
                assert client.request(method, path).status_code == 200
                rows.append({"ts": ts, "endpoint": name, "method": method,
                             "latency_ms": (time.perf_counter() - t0) * 1000})
    return pl.DataFrame(rows)


@dataclass
class Window:
    observed: dict[str, Any]
    findings: list[Finding]
    samples: pl.DataFrame
    statements: pl.DataFrame

    def finding(self, kind: str, location: str) -> Finding:
        found = [f for f in self.findings if f.kind == kind and f.location == location]
        assert len(found) == 1, [(f.kind, f.location) for f in self.findings]
        return found[0]


@pytest.fixture(scope="module")
def window(pg_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Window:
    dsn = create_database(pg_cluster, "capture_api")
    pg_app.seed(dsn, ROWS)
    workdir = tmp_path_factory.mktemp("pgcapture")
    log_dir = sql_log_dir(workdir)
    spec = TargetSpec(name="pg-capture", base_url="http://127.0.0.1:1", database={"url": dsn, "allow_ddl": True},
                      load={"warmup_s": 0, "locustfile": "locustfile.py"})
    ctx = AgentContext(spec=spec, base_url=spec.base_url, workdir=workdir, window_s=30, database_url=dsn)
    agent, observed, samples = support.profile_while_driving(
        ctx, "pg_capture_app:app", {"APP_DSN": dsn}, log_dir, workdir / "app.log", drive, join_s=PROFILE_JOIN_S)
    return Window(observed, agent.findings(ctx, observed, samples), samples, read_statements(log_dir))


@pytest.mark.postgres
def test_sync_and_async_psycopg_statements_carry_request_and_duration(window):
    frame = window.statements
    assert frame["pid"].n_unique() == 1
    page = frame.filter(pl.col("sql") == pg_app.PAGE_SQL)  # AsyncConnection.execute -> AsyncCursor.execute
    report = frame.filter(pl.col("sql") == pg_app.REPORT_SQL)  # sync Cursor.execute in the thread pool
    detail = frame.filter(pl.col("sql") == pg_app.DETAIL_SQL)  # AsyncCursor.execute
    for part, route in ((page, "/invoices"), (report, "/report"), (detail, "/invoices/{iid:int}")):
        assert part.height == ROUNDS and part["route"].unique().to_list() == [route]
        assert part["request_id"].n_unique() == ROUNDS and part["method"].unique().to_list() == ["GET"]
        assert (part["duration_ms"] > 0).all()
    assert page["rows"].unique().to_list() == [pg_app.PAGE_SIZE] and detail["rows"].unique().to_list() == [1]
    assert page["params"][0] == f"[{pg_app.PAGE_SIZE}, 0]" and report["params"][0] == '["2023-01-01", "2023-01-31"]'
    # a sequential scan of 100k rows costs more than a primary-key lookup, in the same run
    assert report["duration_ms"].median() > detail["duration_ms"].median()
    notes = frame.filter(pl.col("path") == "/notes")  # executemany of a rendered sql.Composed
    assert notes["sql"].unique().to_list() == ['INSERT INTO "notes" (body) VALUES (%s)']
    assert notes.height == ROUNDS and notes["rows"].unique().to_list() == [3] and notes["method"][0] == "POST"


@pytest.mark.postgres
def test_missing_indexes_are_attributed_to_the_endpoint_that_spends_the_time(window):
    report = window.finding("missing_index", "invoices.issued_on")
    listing = window.finding("missing_index", "invoices.created_at")
    # the names all mention invoices (or none does): the table-name rule could not decide
    assert report.endpoint == "revenue_report" and listing.endpoint == "invoices_page"
    for f in (report, listing):
        assert f.evidence["endpoint_attribution"] == "captured statements (100% of matching time)"
        assert f.candidate is not None and f.candidate.endpoint == f.endpoint
        times = f.evidence["endpoint_time"]
        assert times["matched_statements"] == ROUNDS and list(times["ms_by_endpoint"]) == [f.endpoint]
    # invoice_detail selects both columns but filters on the primary key: not a user of either index
    assert "invoice_detail" not in str(report.evidence) and "invoice_detail" not in str(listing.evidence)


@pytest.mark.postgres
def test_slow_query_is_attributed_by_its_normalized_text(window):
    slow = [f for f in window.findings if f.kind == "slow_query" and "issued_on >= $1" in f.evidence["statement"]]
    assert slow, [(f.kind, f.location) for f in window.findings]
    assert slow[0].endpoint == "revenue_report"
    assert slow[0].evidence["endpoint_attribution"].startswith("captured statements")


def test_no_endpoint_without_a_clear_majority():
    frame = add_statement_columns(pl.DataFrame({
        "ts": [1.0, 2.0, 3.0, 4.0], "duration_ms": [30.0, 25.0, 45.0, 5.0],
        "sql": ["SELECT a FROM t WHERE b = %s"] * 3 + ["SELECT a FROM t WHERE c = %s"],
        "pid": [1] * 4, "thread": [1] * 4, "request_id": ["r1", "r2", "r3", "r4"], "method": ["GET"] * 4,
        "path": ["/x/1", "/y", "/x/2", "/x/3"], "route": [None, None, None, None], "rows": [1] * 4, "params": [None] * 4,
    }))
    named = name_statements(frame, [("xs", "/x/{int:1:9}"), ("ys", "/y")], pl.DataFrame({"endpoint": ["xs", "ys"]}))
    assert named["name"].to_list() == ["xs", "ys", "xs", "xs"]  # by path template, no time needed
    b_uses = statements_using_index(named, "t", ["b"])
    assert b_uses.to_list() == [True, True, True, False]
    found = attribute_time(named, b_uses, 0.6)
    assert found.endpoint == "xs" and found.share == pytest.approx(75 / 100)
    split = attribute_time(named, b_uses, 0.8)
    assert split.endpoint is None and split.top == "xs" and split.describe(0.8).startswith("none")
    assert statements_like(named, ["SELECT a FROM t WHERE c = $1"]).to_list() == [False, False, False, True]
    assert attribute_time(named, statements_like(named, ["SELECT 1"])) is None  # nothing matched: no verdict


def test_a_target_without_psycopg_never_loads_the_pg_capture(tmp_path):
    probe = ("import sys, sqlite3; sqlite3.connect(':memory:').execute('SELECT 1');"
             "print('psycopg' in sys.modules, 'perfagents_pgcapture' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", ENV_VAR)}
    env.update(PYTHONPATH=str(INJECT_DIR), **{ENV_VAR: str(tmp_path / "log")})
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["False", "False"]
    assert read_statements(tmp_path / "log")["sql"].to_list() == ["SELECT 1"]


E2E_USERS = 8
E2E_DURATION_S = 10
E2E_WARMUP_S = 2


@pytest.mark.postgres
def test_enterprise_api_findings_name_the_endpoint_they_slow_down(pg_cluster, tmp_path):
    """The real API on PostgreSQL under a real Locust run, started with the capture: every endpoint
    touches ``invoices``, yet the issued_on index is attributed to revenue_report alone."""
    from reference_workflows.enterprise_api.launch import running_app
    from reference_workflows.enterprise_api.seed import seed_database
    from tasks.load.runner import run_load_test
    from tasks.spec import load_spec

    dsn = create_database(pg_cluster, "enterprise_capture")
    seed_database(dsn, scale=0.2)
    spec = load_spec("enterprise-api", database_url=dsn)
    spec = spec.model_copy(update={"load": spec.load.model_copy(
        update={"users": E2E_USERS, "spawn_rate": E2E_USERS, "duration_s": E2E_DURATION_S, "warmup_s": E2E_WARMUP_S})})
    env = DatabaseAgent().target_env(tmp_path)  # what the run gives the target it starts
    with running_app(dsn, {"API_POOL_SIZE": "4", "API_AUTH_CACHE_TTL_S": "60", **env}, log_dir=tmp_path) as app:
        spec = spec.model_copy(update={"base_url": app.base_url})
        ctx = AgentContext(spec=spec, base_url=app.base_url, workdir=tmp_path,
                           window_s=E2E_DURATION_S + E2E_WARMUP_S, database_url=dsn)
        observed: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: observed.update(DatabaseAgent().profile(ctx)), daemon=True)
        thread.start()
        try:
            samples = run_load_test(spec, app.base_url, tmp_path / "load", label="pg").samples
        finally:
            ctx.stop.set()
            thread.join(PROFILE_JOIN_S)
    assert observed, "profile failed"
    findings = {f.location: f for f in DatabaseAgent().findings(ctx, observed, samples) if f.kind == "missing_index"}
    report, listing = findings["invoices.issued_on"], findings["invoices.created_at"]
    assert report.endpoint == "revenue_report", report.evidence["endpoint_attribution"]
    assert report.evidence["endpoint_attribution"].startswith("captured statements")
    assert report.candidate is not None and report.candidate.endpoint == "revenue_report"
    # the listing's time is spent by the two Locust names of one route, whichever holds the majority
    times = listing.evidence["endpoint_time"]["ms_by_endpoint"]
    listing_ms = sum(ms for name, ms in times.items() if name in ("invoices_page", "invoices_deep"))
    assert listing_ms >= 0.9 * listing.evidence["endpoint_time"]["matched_ms"], times
    assert listing.endpoint in ("invoices_page", "invoices_deep", None)
