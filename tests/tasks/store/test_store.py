"""The DuckDB store: migrations, transactions, and the methods every other module writes and reads through."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.budget import parse_budget
from tasks.expressions import parse_expressions
from tasks.request import Request
from tasks.run import open_run
from tasks.spec import TargetSpec
from tasks.store import MIGRATIONS, Store, now


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_target() -> Iterator[str]:
    """A real HTTP server on a free port for open_run to attach to."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _run(store: Store, run_id: str, target: str = "shop", started_at=None, code_version: str | None = "abc123") -> None:
    store.insert_run(run_id, target=target, scope="quick-win", flow="optimize-target", spec={"name": target},
                     goals=["p95_ms<=30"], quality=["error_rate<=0.01"], budget={"minutes": 5},
                     code_version=code_version, started_at=started_at)


def _count(store: Store, table: str) -> int:
    return store.rows(f"SELECT count(*) AS n FROM {table}")[0]["n"]


# -- runs ------------------------------------------------------------------------------------
def test_runs_row_complete_after_open_run_and_finish(tmp_path: Path, http_target: str) -> None:
    spec = TargetSpec(name="attached", base_url=http_target, load={"endpoints": [{"name": "home", "path": "/"}]})
    request = Request(spec=spec, goals=parse_expressions(["p95_ms<=30"]), quality=parse_expressions(["error_rate<=0.01"]),
                      budget=parse_budget("minutes=5,iterations=3"), scope="quick-win", store=tmp_path / "store.duckdb")
    path = request.store
    with open_run(request) as run:
        run.store.finish_run(run.run_id, "goals_met", {"status": "goals_met", "kept": 1},
                             [("wall", 12.5, "s"), ("tokens", 0, "tokens")])
        run_id = run.run_id
    with Store(path, read_only=True) as st:
        row = st.rows("SELECT * FROM runs WHERE run_id = ?", [run_id])[0]
        costs = st.run_costs(run_id)
    assert json.loads(row["goals"]) == ["p95_ms<=30"]  # was NULL: a comment swallowed the field
    assert json.loads(row["quality"]) == ["error_rate<=0.01"]
    budget = json.loads(row["budget"])
    assert budget["minutes"] == 5 and budget["iterations"] == 3
    assert json.loads(row["spec"])["name"] == "attached"
    assert (row["target"], row["scope"], row["flow"]) == ("attached", "quick-win", "optimize-target")
    assert row["status"] == "goals_met"
    assert json.loads(row["result"]) == {"status": "goals_met", "kept": 1}
    assert row["started_at"] is not None and row["ended_at"] >= row["started_at"]
    assert costs == {"wall": 12.5, "tokens": 0}


def test_finish_run_is_atomic(store: Store) -> None:
    _run(store, "r1")
    with pytest.raises(Exception):  # noqa: B017 (DuckDB's conversion error; the point is what is left)
        store.finish_run("r1", "kept", {"a": 1}, [("wall", 1.0, "s"), ("cpu", "not a number", "s")])
    row = store.rows("SELECT status, result, ended_at FROM runs WHERE run_id = 'r1'")[0]
    assert row == {"status": "running", "result": None, "ended_at": None}
    assert store.run_costs("r1") == {}


def test_recent_runs_newest_first_filtered_and_limited(store: Store) -> None:
    t0 = now()
    for i, target in enumerate(["shop", "api", "shop", "shop"]):
        _run(store, f"r{i}", target, started_at=t0.replace(microsecond=0).replace(second=i))
    assert [r["run_id"] for r in store.recent_runs()] == ["r3", "r2", "r1", "r0"]
    assert [r["run_id"] for r in store.recent_runs("shop", limit=2)] == ["r3", "r2"]
    assert set(store.recent_runs()[0]) == {"run_id", "target", "flow", "status", "started_at", "ended_at", "result"}


def test_result_row_by_id_else_latest_finished(store: Store) -> None:
    t0 = now().replace(microsecond=0)
    _run(store, "old", "shop", started_at=t0.replace(second=1))
    _run(store, "api", "api", started_at=t0.replace(second=2))
    _run(store, "live", "shop", started_at=t0.replace(second=3))  # still running: no result
    store.finish_run("old", "kept", {"n": 1})
    store.finish_run("api", "kept", {"n": 2})
    assert store.result_row()["run_id"] == "api"
    assert store.result_row(target="shop")["run_id"] == "old"
    assert store.result_row("live") == {"run_id": "live", "status": "running", "result": None}
    assert store.result_row("missing") is None
    assert store.result_row(target="nobody") is None


def test_run_code_version(store: Store) -> None:
    _run(store, "r1", code_version="deadbee")
    _run(store, "r2", code_version=None)
    assert store.run_code_version("r1") == "deadbee"
    assert store.run_code_version("r2") is None
    assert store.run_code_version("missing") is None


# -- migrations and transactions ------------------------------------------------------------
def test_migrations_recorded_once_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    with Store(path) as st:
        first = st.rows("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in first] == [v for v, _, _ in MIGRATIONS]
    with Store(path) as st:
        assert st.migrate() == []
        again = st.rows("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        assert _count(st, "runs") == 0
    assert again == first


def test_failed_transaction_leaves_no_rows(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction():
            _run(store, "r1")
            store.insert_validation("w1", "p95_ms<=30", True, {"p95_ms": 12})
            store.insert_change("c1", run_id="r1", target="shop", seq=1, kind="set_knob",
                                params={"knob": "workers"}, description="more workers", risk="low")
            raise RuntimeError("boom")
    assert (_count(store, "runs"), _count(store, "validations"), _count(store, "changes")) == (0, 0, 0)
    _run(store, "r2")  # the connection is usable afterwards
    assert _count(store, "runs") == 1


def test_nested_transaction_rolls_back_with_the_outer_one(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction():
            _run(store, "r1")
            store.save_kept_state("shop", {"workers": 4}, [], "r1")  # its own transaction joins the outer one
            raise RuntimeError("later failure")
    assert store.kept_state("shop") is None
    assert _count(store, "runs") == 0


# -- validations, the change journal, kept state ---------------------------------------------
def test_insert_validation_stores_observed_as_json(store: Store) -> None:
    store.insert_validation("w1", "responses==baseline", False, ["GET /a: 500 != 200"])
    row = store.rows("SELECT * FROM validations")[0]
    assert (row["window_id"], row["expectation"], row["success"]) == ("w1", "responses==baseline", False)
    assert json.loads(row["observed"]) == ["GET /a: 500 != 200"]
    assert row["checked_at"] is not None


def test_change_journal_round_trip(store: Store) -> None:
    for seq, (cid, target) in enumerate([("c1", "shop"), ("c2", "shop"), ("c3", "api")], start=1):
        store.insert_change(cid, run_id="r1", target=target, seq=seq, kind="set_knob",
                            params={"knob": "workers", "value": seq}, description=f"change {seq}", risk="low")
    store.update_change("c1", "applied", undo={"knob": "workers", "value": 1})
    store.update_change("c2", "kept", effect={"p95_ratio": 0.8}, reason="faster")
    open_ = store.open_changes()
    assert [r["change_id"] for r in open_] == ["c3", "c1"]  # newest first; kept c2 is settled
    c1 = open_[1]
    assert c1["status"] == "applied" and c1["undo"] == {"knob": "workers", "value": 1}
    assert c1["params"] == {"knob": "workers", "value": 1} and c1["description"] == "change 1"
    assert [r["change_id"] for r in store.open_changes("shop")] == ["c1"]
    c2 = store.rows("SELECT * FROM changes WHERE change_id = 'c2'")[0]
    assert (c2["status"], c2["reason"], json.loads(c2["effect"])) == ("kept", "faster", {"p95_ratio": 0.8})
    assert c2["undo"] is None  # not given: left as it was


def test_kept_state_replaced_per_target(store: Store) -> None:
    assert store.kept_state("shop") is None
    store.save_kept_state("shop", {"workers": 2}, [{"kind": "set_knob"}], "r1", "v1")
    store.save_kept_state("shop", {"workers": 4}, [], "r2")
    assert store.kept_state("shop") == {"config": {"workers": 4}, "kept_changes": [], "run_id": "r2", "code_version": None}
    assert _count(store, "target_state") == 1


# -- search windows --------------------------------------------------------------------------
def _window(store: Store, window_id: str, run_id: str, label: str, valid: bool, second: int,
            failed: tuple[str, ...] = ()) -> None:
    store.insert_row("windows", {"window_id": window_id, "run_id": run_id, "label": label, "config": {"w": window_id},
                                 "valid": valid, "started_at": now().replace(microsecond=0, second=second)})
    for endpoint in ("__total__", "home"):
        store.insert_row("endpoint_stats", {"window_id": window_id, "endpoint": endpoint, "requests": 10, "p95_ms": 5.0})
    for expectation in failed:
        store.insert_validation(window_id, expectation, False, None)


def test_search_windows_selects_what_history_may_reuse(store: Store) -> None:
    _run(store, "r1", "shop", code_version="v1")
    _run(store, "r2", "shop", code_version="v2")
    _window(store, "ok", "r1", "search-1", True, 1)
    store.insert_validation("ok", "responses==baseline", True, [])
    _window(store, "errors", "r1", "search-2", False, 2, failed=("error_rate",))
    _window(store, "errors_wrong", "r1", "search-3", False, 3, failed=("error_rate", "responses==baseline"))
    _window(store, "other_rule", "r1", "search-4", False, 4, failed=("error_rate", "samples"))
    _window(store, "noisy", "r1", "search-5", False, 5)  # invalid, no error_rate failure
    _window(store, "baseline", "r1", "baseline-1", True, 6)
    _window(store, "other_code", "r2", "search-7", True, 7)
    rows = store.search_windows("shop", "v1", "search-", responses_expectation="responses==baseline",
                                error_expectation="error_rate")
    assert [(r["window_id"], r["endpoint"]) for r in rows] == [
        ("ok", "__total__"), ("ok", "home"), ("errors", "__total__"), ("errors", "home"),
        ("errors_wrong", "__total__"), ("errors_wrong", "home")]
    ok = {r["window_id"]: r["responses_ok"] for r in rows}
    assert ok == {"ok": True, "errors": None, "errors_wrong": False}
    assert json.loads(rows[0]["config"]) == {"w": "ok"} and rows[0]["p95_ms"] == 5.0
    assert store.search_windows("api", "v1", "search-", responses_expectation="responses==baseline",
                                error_expectation="error_rate") == []


def test_a_window_its_frames_agent_runs_and_findings(store: Store) -> None:
    import polars as pl

    _run(store, "r1")
    with store.transaction():
        store.insert_window("w1", run_id="r1", label="baseline-1", attempt=1, config={"workers": 1},
                            change_id=None, started_at=now(), duration_s=20.0, warmup_s=3.0, users=20,
                            loadgen_cpu_pct=12.5, valid=True, reason=None)
        samples = pl.DataFrame({"ts": [1.0, 2.0], "endpoint": ["a", "b"], "method": ["GET", "GET"],
                                "latency_ms": [3.0, 4.0], "status": [200, 200], "bytes": [10, 20],
                                "error": [None, None]})
        assert store.insert_window_frame("samples", "w1", samples) == 2
        resources = pl.DataFrame({"ts": [1.0], "role": ["target"], "pids": [1], "cpu_pct": [50.0],
                                  "rss_bytes": [1], "threads": [2], "ctx_switches": [3], "open_files": [4],
                                  "not_a_column": ["dropped"]})
        store.insert_window_frame("resources", "w1", resources)  # a column the table lacks is left out
        store.insert_agent_run("w1", "database", "ok", None, 1.5, {"statements": 3})
        store.insert_finding("r1", "w1", {"agent": "database", "kind": "missing_index", "location": "orders.c",
                                          "endpoint": None, "severity": "high", "evidence": {"plan": "SCAN"},
                                          "estimated_gain": {}, "candidate": None})
    (window,) = store.rows("SELECT label, users, valid FROM windows WHERE window_id = 'w1'")
    assert window == {"label": "baseline-1", "users": 20, "valid": True}
    assert [_count(store, t) for t in ("samples", "resources", "agent_runs", "findings")] == [2, 1, 1, 1]
    (finding,) = store.rows("SELECT kind, evidence FROM findings")
    assert finding["kind"] == "missing_index" and json.loads(finding["evidence"]) == {"plan": "SCAN"}
    with pytest.raises(ValueError, match="not a window table"):
        store.insert_window_frame("runs", "w1", samples)
