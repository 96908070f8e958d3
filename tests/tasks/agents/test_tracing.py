"""The tracing agent end to end: a real Starlette + SQLite app started by the real lifecycle
under ``opentelemetry-instrument``, its spans received over OTLP/HTTP, broken down per endpoint."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from tasks.agents.base import AgentContext
from tasks.agents.registry import agents_for
from tasks.agents.tracing import DB_SHARE_THRESHOLD, TracingAgent
from tasks.spec import TargetSpec
from tasks.store import Store
from tasks.target import start_target, stop_target
from tasks.tracing import SPANS_KEY, current_receiver, spans_frame

APP = Path(__file__).with_name("traced_app.py")
VENV_BIN = Path(sys.executable).parent  # no resolve(): the launcher sits next to the venv's python
REQUESTS_PER_ENDPOINT = 15
PROFILE_JOIN_S = 30

pytestmark = pytest.mark.skipif(not (VENV_BIN / "opentelemetry-instrument").is_file(),
                                reason="opentelemetry-distro is not installed next to the test's python")


def traced_spec(tmp_path: Path, **start: Any) -> TargetSpec:
    return TargetSpec.model_validate({
        "name": "traced",
        "base_url": "http://127.0.0.1:{port}",
        "start": {"command": [str(VENV_BIN / "python"), str(APP), "--port", "{port}"],
                  "env": {"APP_DB": "{workdir}/app.db"}, "ready_path": "/health", "ready_timeout_s": 60,
                  "tracing": "opentelemetry", **start},
        "load": {"endpoints": [{"name": "items", "path": "/items/{int:1:50}"},
                               {"name": "ping", "path": "/ping"}],
                 "warmup_s": 0, "duration_s": 5},
        "spec_dir": tmp_path,
    })


def port_refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def window(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One traced window: the agent profiles while the test sends requests, then the target stops."""
    tmp_path = tmp_path_factory.mktemp("traced")
    spec = traced_spec(tmp_path)
    handle = start_target(spec, tmp_path / "work")
    try:
        receiver = current_receiver()
        assert receiver is not None
        agent = TracingAgent()
        ctx = AgentContext(spec=spec, base_url=handle.base_url, workdir=tmp_path / "work", window_s=10)
        result: dict[str, Any] = {}
        profiler = threading.Thread(target=lambda: result.update(agent.profile(ctx)), daemon=True)
        profiler.start()
        with httpx.Client(base_url=handle.base_url, timeout=10) as client:
            for i in range(REQUESTS_PER_ENDPOINT):
                assert client.get(f"/items/{i + 1}").status_code == 200
                assert client.get("/ping").status_code == 200
        ctx.stop.set()
        profiler.join(PROFILE_JOIN_S)
        assert not profiler.is_alive()
        samples = pl.DataFrame({"endpoint": ["items", "ping"], "latency_ms": [1.0, 1.0]})
        findings = agent.findings(ctx, result, samples)
    finally:
        stop_target(handle)
    return {"observed": result, "findings": findings, "receiver_port": receiver.port, "spec": spec}


def by_route(observed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["endpoint"]: row for row in observed["endpoints"]}


def test_spans_arrive_with_parent_child_links(window: dict[str, Any]) -> None:
    spans = window["observed"][SPANS_KEY]
    by_id = {s["span_id"]: s for s in spans}
    db = [s for s in spans if s["attributes"].get("db.system") == "sqlite"]
    assert len(db) >= REQUESTS_PER_ENDPOINT * 4  # 1 heavy + 3 lookups per /items request
    for span in db:
        parent = span
        while parent["parent_id"] is not None:  # up the tree to the request's root
            parent = by_id[parent["parent_id"]]
            assert parent["trace_id"] == span["trace_id"]
        assert parent["kind"] == "SERVER"
        assert parent["attributes"]["http.route"] == "/items/{item_id:int}"
        assert parent["attributes"]["service.name"] == "traced"
    assert window["observed"]["unattributed_db_spans"] == 0
    assert window["observed"]["receiver"]["dropped"] == 0


def test_breakdown_gives_the_db_share_per_endpoint(window: dict[str, Any]) -> None:
    rows = by_route(window["observed"])
    items, ping = rows["/items/{item_id:int}"], rows["/ping"]
    assert items["requests"] == ping["requests"] == REQUESTS_PER_ENDPOINT
    assert items["db_calls_per_request"] == 4
    assert items["db_share"] > DB_SHARE_THRESHOLD
    assert ping["db_share"] == 0 and ping["db_calls_per_request"] == 0
    assert "WITH RECURSIVE" in items["top_statements"][0]["statement"]
    assert "/health" not in rows  # the ready probes came before the window


def test_only_the_db_bound_endpoint_is_a_finding(window: dict[str, Any]) -> None:
    found = window["findings"]
    assert [(f.kind, f.endpoint, f.agent) for f in found] == [("db_time_share", "items", "tracing")]
    evidence = found[0].evidence
    assert evidence["requests"] == REQUESTS_PER_ENDPOINT
    assert evidence["db_calls_per_request"] == 4 and evidence["p95_server_ms"] > 0


def test_stopping_the_target_stops_the_receiver(window: dict[str, Any]) -> None:
    assert current_receiver() is None
    assert port_refuses(window["receiver_port"])
    assert not [t for t in threading.enumerate() if t.name.startswith("otlp-")]


def test_spans_go_to_the_store_table(window: dict[str, Any], tmp_path: Path) -> None:
    spans = window["observed"][SPANS_KEY]
    with Store(tmp_path / "store.duckdb") as store:
        with store.transaction():
            store.insert_frame("spans", spans_frame(spans, "w1"))
        rows = store.rows(
            "SELECT count(*) AS n FROM spans c JOIN spans p ON c.parent_id = p.span_id AND c.trace_id = p.trace_id "
            "WHERE c.window_id = 'w1' AND c.attributes->>'db.system' = 'sqlite' AND p.kind = 'SERVER'"
        )
    assert rows[0]["n"] >= REQUESTS_PER_ENDPOINT * 4


def test_the_agent_is_registered_for_traced_specs_only(window: dict[str, Any]) -> None:
    spec: TargetSpec = window["spec"]
    assert "tracing" in [a.name for a in agents_for(spec)]
    untraced = spec.model_copy(update={"start": spec.start.model_copy(update={"tracing": None})})
    assert "tracing" not in [a.name for a in agents_for(untraced)]


def test_without_a_receiver_the_agent_skips(tmp_path: Path) -> None:
    ctx = AgentContext(spec=traced_spec(tmp_path), base_url="http://127.0.0.1:9", workdir=tmp_path, window_s=1)
    ctx.stop.set()
    assert "skipped" in TracingAgent().profile(ctx)


def test_a_measured_window_stores_its_spans_and_the_breakdown(store: Store, tmp_path: Path) -> None:
    from tasks import window as window_mod
    from tasks.budget import Budget, Ledger
    from tasks.changes.runtime import Runtime

    spec = traced_spec(tmp_path)
    spec = spec.model_copy(update={"load": spec.load.model_copy(update={"users": 2, "spawn_rate": 2,
                                                                        "duration_s": 3, "warmup_s": 1})})
    handle = start_target(spec, tmp_path / "work")
    try:
        w = window_mod.measure_window(store, "run-1", Runtime(spec, tmp_path / "work", handle, {}), "baseline-1",
                                      agents=[TracingAgent()], ledger=Ledger(Budget()), max_attempts=1)
    finally:
        stop_target(handle)
    outcome = w.agents[0]
    assert outcome.status == "ok", outcome.error
    stored = store.rows("SELECT count(*) AS n, count(DISTINCT trace_id) AS traces FROM spans WHERE window_id = ?",
                        [w.window_id])[0]
    assert stored["n"] == outcome.observed["spans_stored"] > 0
    assert stored["traces"] == outcome.observed["traces"]
    observed = store.rows("SELECT observed FROM agent_runs WHERE window_id = ?", [w.window_id])[0]["observed"]
    assert SPANS_KEY not in observed and '"db_share"' in observed  # the rows went to their own table
    if w.valid:  # findings only come from windows the gate accepts
        assert [(f.kind, f.endpoint) for f in w.findings] == [("db_time_share", "items")]
