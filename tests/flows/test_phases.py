"""How a workflow's phases end: an error that is not ours still leaves the run recorded as failed."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flows.phases import run_workflow
from tasks.budget import parse_budget
from tasks.request import Request
from tasks.run import Run
from tasks.spec import TargetSpec
from tasks.store import Store


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_unexpected_error_ends_the_run_failed_and_goes_up(tmp_path: Path, http_target: str, shared_prefect_api) -> None:
    spec = TargetSpec(name="attached", base_url=http_target, load={"endpoints": [{"name": "home", "path": "/"}]})
    request = Request(spec=spec, goals=[], quality=[], budget=parse_budget("minutes=1"), scope="quick-win",
                      store=tmp_path / "store.duckdb")

    def locked(run: Run) -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        run_workflow(request, flow_name="optimize-target", optimize=[locked])
    with Store(tmp_path / "store.duckdb", read_only=True) as st:
        (row,) = st.rows("SELECT status, ended_at, result FROM runs")
    assert row["status"] == "failed" and row["ended_at"] is not None  # was left `running`
    assert "unexpected OperationalError: database is locked" in row["result"]


def test_a_run_without_candidates_says_when_the_spec_withheld_index_findings() -> None:
    from types import SimpleNamespace

    from flows.phases import withheld_by_spec
    from tasks.findings import Candidate, Finding

    index = Finding(agent="database", kind="missing_index", location="orders.user_id", severity="high",
                    evidence={})
    tried = Finding(agent="database", kind="missing_index", location="orders.id", severity="high", evidence={},
                    candidate=Candidate("create_index", {"table": "orders"}, "x"))
    other = Finding(agent="database", kind="n_plus_one", location="shop:lines", severity="medium", evidence={})
    run = SimpleNamespace(spec=SimpleNamespace(database=SimpleNamespace(allow_ddl=False)), findings=[index, tried, other])
    assert withheld_by_spec(run) == " (1 index finding(s) not tried: database.allow_ddl is false in the spec)"
    run.spec.database.allow_ddl = True
    assert withheld_by_spec(run) == ""
    run.spec.database, run.findings = None, [index]
    assert withheld_by_spec(run) == ""
