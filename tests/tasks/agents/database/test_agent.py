"""The database agent against a real Starlette + SQLite target under uvicorn, driven by httpx."""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from tasks.agents.base import AgentContext
from tasks.agents.database.agent import DatabaseAgent, endpoint_names
from tasks.findings import Finding
from tasks.spec import TargetSpec

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("perfagents_test_sqlite_app_db", HERE / "sqlite_target_app.py")
target_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(target_app)

PROFILE_TIMEOUT_S = 60
ROUNDS = 12


def make_spec(base_url: str, db: Path, allow_ddl: bool = True) -> TargetSpec:
    return TargetSpec(
        name="sqlite-app", base_url=base_url,
        database={"url": f"sqlite:///{db}", "allow_ddl": allow_ddl},
        load={"warmup_s": 0, "endpoints": [
            {"name": "user_orders", "path": "/users/{int:1:2000}/orders"},
            {"name": "latest_orders", "path": "/orders/latest"},
            {"name": "items", "path": "/items?category=cat1&color=color2"},
        ]},
    )


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Window:
    ctx: AgentContext
    observed: dict[str, Any]
    findings: list[Finding]
    samples: pl.DataFrame
    digest_before: str
    digest_after: str
    db: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]


@pytest.fixture(scope="module")
def window(tmp_path_factory) -> Window:
    workdir = tmp_path_factory.mktemp("dbagent")
    db = workdir / "app.db"
    target_app.seed(str(db))
    agent = DatabaseAgent()
    with target_app.serve(sys.executable, db, agent.target_env(workdir), workdir / "app.log") as base:
        spec = make_spec(base, db)
        ctx = AgentContext(spec=spec, base_url=base, workdir=workdir, window_s=20, database_url=f"sqlite:///{db}")
        observed: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: observed.update(agent.profile(ctx)), daemon=True)
        thread.start()
        rows = []
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in range(ROUNDS):
                for name, path in (
                    ("user_orders", f"/users/{i + 1}/orders"),
                    ("latest_orders", "/orders/latest"),
                    ("items", f"/items?category=cat{i % 4}&color=color{i % 3}"),
                    ("pasted_user", f"/users/{i + 10}"),  # a locustfile name=, not a path
                    ("pending", "/orders/pending"),
                ):
                    ts, t0 = time.time(), time.perf_counter()
                    assert client.get(path).status_code == 200
                    rows.append({"ts": ts, "endpoint": name, "method": "GET",
                                 "latency_ms": (time.perf_counter() - t0) * 1000})
        digest_before = file_digest(db)
        ctx.stop.set()
        thread.join(PROFILE_TIMEOUT_S)
        assert not thread.is_alive(), "profile did not return"
    samples = pl.DataFrame(rows)
    findings = agent.findings(ctx, observed, samples)
    return Window(ctx, observed, findings, samples, digest_before, file_digest(db), db)


def statement(window: Window, prefix: str) -> dict[str, Any]:
    matches = [s for s in window.observed["statements"] if s["statement"].startswith(prefix)]
    assert len(matches) == 1, [s["statement"] for s in window.observed["statements"]]
    return matches[0]


def test_statements_captured_with_durations_and_endpoints(window):
    obs = window.observed
    assert obs["attribution"] == "request"
    assert obs["statements_captured"] == ROUNDS * (1 + 1 + target_app.N_PLUS_ONE + 1 + 1 + 1)
    endpoints = {e["endpoint"]: e for e in obs["endpoints"]}
    assert endpoints["/users/{uid:int}/orders"]["requests"] == ROUNDS
    assert endpoints["/orders/latest"]["statements_per_request"] == 1 + target_app.N_PLUS_ONE
    orders = statement(window, "SELECT id, amount FROM orders WHERE user_id = ?")
    assert orders["calls"] == ROUNDS and orders["mean_ms"] > 0 and orders["p95_ms"] >= orders["p50_ms"]
    assert orders["endpoints"][0]["endpoint"] == "/users/{uid:int}/orders"


def test_normalization_merges_literals(window):
    pasted = statement(window, "SELECT id, name FROM users WHERE id = ?")
    assert pasted["calls"] == ROUNDS  # twelve different literals, one statement


def test_explain_shows_the_full_scan(window):
    orders = statement(window, "SELECT id, amount FROM orders WHERE user_id = ?")
    assert orders["plan"] == ["SCAN orders"]
    assert orders["full_scans"][0]["index_columns"] == ["user_id"]
    pending = statement(window, "SELECT count(*) FROM orders WHERE status = ?")
    assert "idx_orders_status" in pending["plan"][0] and pending["full_scans"] == []


def test_missing_index_is_measured_on_a_copy_with_a_candidate(window):
    found = {f.location: f for f in window.of_kind("missing_index")}
    assert set(found) == {"orders.user_id", "items(category,color)"}
    orders = found["orders.user_id"]
    assert orders.endpoint == "user_orders"  # the Locust name, mapped from the route template
    whatif = orders.evidence["whatif"]
    assert whatif["index_used"] and whatif["after_ms"] < whatif["before_ms"]
    assert orders.estimated_gain["ratio"] >= 2
    assert "SEARCH orders USING INDEX perfagents_orders_user_id" in orders.evidence["plans_with_index"][0][0]
    cand = orders.candidate
    assert cand is not None and cand.kind == "create_index" and cand.endpoint == "user_orders"
    assert cand.params == {"table": "orders", "columns": ["user_id"], "name": "perfagents_orders_user_id"}
    assert 0.5 < cand.expected_gain < 1
    items = found["items(category,color)"]
    assert items.candidate.params["columns"] == ["category", "color"] and items.endpoint == "items"


def test_original_database_untouched_and_copy_removed(window):
    assert window.digest_after == window.digest_before
    con = sqlite3.connect(f"{window.db.as_uri()}?mode=ro", uri=True)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()}
    con.close()
    assert names == {"idx_orders_status", "idx_items_sku"}
    assert list((window.ctx.workdir / "whatif").glob("*.db*")) == []


def test_n_plus_one_on_the_right_endpoint(window):
    (found,) = window.of_kind("n_plus_one")
    # the code that loops (a list comprehension folds into its function); the endpoint stays in endpoint
    assert found.endpoint == "latest_orders" and found.location == "sqlite_target_app:latest_orders"
    assert found.evidence["call_site"] == found.location
    assert found.evidence["stack"][0].startswith("sqlite_target_app:latest_orders:")
    assert found.evidence["statement"] == "SELECT name FROM users WHERE id = ?"
    counts = found.evidence["count_per_request"]
    assert counts["median"] == counts["max"] == target_app.N_PLUS_ONE
    assert found.evidence["requests_with_repeats"] == found.evidence["endpoint_requests"] == ROUNDS
    assert found.evidence["attribution"] == "request"


def test_unused_index_reported_used_one_not(window):
    unused = {f.location: f for f in window.of_kind("unused_index")}
    assert set(unused) == {"items.sku"}
    assert unused["items.sku"].evidence["index"] == "idx_items_sku" and unused["items.sku"].candidate is None


def test_slow_query_carries_its_plan(window):
    slow = {f.evidence["statement"]: f for f in window.of_kind("slow_query")}
    orders = slow.get("SELECT id, amount FROM orders WHERE user_id = ?")
    assert orders is not None and orders.location == "orders" and orders.evidence["plan"] == ["SCAN orders"]


def test_endpoints_named_by_path_or_by_time(window):
    names = endpoint_names(window.ctx, window.observed, window.samples)
    assert names["/users/{uid:int}/orders"] == "user_orders"  # spec endpoint path template
    assert names["/users/{uid:int}"] == "pasted_user" and names["/orders/pending"] == "pending"  # by time
    assert endpoint_names(window.ctx, window.observed, window.samples.select("endpoint")).get("/orders/pending") is None


def test_no_candidate_without_allow_ddl(window):
    ctx = AgentContext(spec=make_spec(window.ctx.base_url, window.db, allow_ddl=False), base_url=window.ctx.base_url,
                       workdir=window.ctx.workdir, window_s=1)
    found = [f for f in DatabaseAgent().findings(ctx, window.observed, window.samples) if f.kind == "missing_index"]
    assert found and all(f.candidate is None for f in found)


def test_findings_are_json_ready(window):
    import json

    json.dumps(window.observed)
    json.dumps([f.to_dict() for f in window.findings])


def test_applies_only_with_a_database(tmp_path):
    agent = DatabaseAgent()
    spec = make_spec("http://127.0.0.1:1", tmp_path / "x.db")
    pg = spec.model_copy(update={"database": spec.database.model_copy(update={"url": "postgresql://u@127.0.0.1/db"})})
    assert agent.applies_to(spec) and agent.applies_to(pg)
    assert not agent.applies_to(spec.model_copy(update={"database": None}))


def test_nothing_captured_is_an_observation_not_an_error(tmp_path):
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    spec = make_spec("http://127.0.0.1:1", db)
    ctx = AgentContext(spec=spec, base_url="http://127.0.0.1:1", workdir=tmp_path, window_s=0.1)
    ctx.stop.set()
    observed = DatabaseAgent().profile(ctx)
    assert observed["statements_captured"] == 0 and "capture_env" in observed["note"]
    assert DatabaseAgent().findings(ctx, observed, pl.DataFrame({"endpoint": []})) == []
