"""The dashboard's JSON and page, on a store written through the Store's own methods (starlette's
TestClient drives the real app; the live run and Chromium are in tests/flows/test_dashboard.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from starlette.testclient import TestClient

from tasks.results.dashboard import create_app
from tasks.store import Store, now

T0 = datetime(2026, 1, 10, tzinfo=UTC)
RESULT = {"status": "goals_met", "stop_reason": "every performance goal is met",
          "baseline": {"total": {"p95_ms": 40.0, "rps": 100.0}}, "final": {"total": {"p95_ms": 20.0, "rps": 150.0}}}


def stats(window_id: str, **per_endpoint: tuple[float, float]) -> pl.DataFrame:
    return pl.DataFrame([{"window_id": window_id, "endpoint": name, "requests": 100, "rps": rps, "p50_ms": p95 / 2,
                          "p95_ms": p95, "p99_ms": p95 * 1.5, "error_rate": 0.0} for name, (p95, rps) in per_endpoint.items()])


def window(store: Store, run_id: str, window_id: str, label: str, minute: int, valid: bool = True, **per_endpoint) -> None:
    store.insert_window(window_id, run_id=run_id, label=label, attempt=1, config={"cache": False}, change_id=None,
                        started_at=T0 + timedelta(minutes=minute), duration_s=2.0, warmup_s=0.5, users=4,
                        loadgen_cpu_pct=10.0, valid=valid, reason=None if valid else "too few samples")
    store.insert_window_frame("endpoint_stats", window_id, stats(window_id, **per_endpoint))


@pytest.fixture
def client(tmp_path: Path, add_history_run) -> TestClient:
    store = Store(tmp_path / "store.duckdb")
    for day in range(4):  # the shop's history: four runs with signatures and A/A windows
        add_history_run(store, f"hist-{day}", day=day, seed=day)
    store.insert_run("done", target="mini", scope="quick-win", flow="optimize-target", spec={}, goals=[], quality=[],
                     budget={}, code_version=None, started_at=T0)
    store.finish_run("done", "goals_met", RESULT)
    store.insert_run("live", target="mini", scope="quick-win", flow="optimize-target", spec={}, goals=[], quality=[],
                     budget={}, code_version=None, started_at=T0 + timedelta(hours=1))
    window(store, "live", "w1", "baseline-1", 61, fast=(10.0, 80.0), item=(30.0, 20.0), __total__=(20.0, 100.0))
    window(store, "live", "w2", "baseline-2", 62, fast=(12.0, 78.0), item=(32.0, 21.0), __total__=(20.0, 98.0))
    window(store, "live", "w3", "change-1", 63, valid=False, fast=(5.0, 90.0), __total__=(6.0, 90.0))
    store.insert_change("c1", run_id="live", target="mini", seq=1, kind="set_knob", params={"knob": "cache", "value": True},
                        description="set knob cache = true", risk="low")
    store.update_change("c1", "kept", reason="faster beyond noise", effect={"endpoint": "fast", "metric": "p50_ms",
                                                                            "ratio": 0.4, "ci95": [0.3, 0.5]})
    store.insert_change("c2", run_id="live", target="mini", seq=2, kind="set_knob", params={"knob": "flaky"},
                        description="set knob flaky = true", risk="low")
    store.update_change("c2", "reverted", reason="quality threshold broken: error_rate",
                        effect={"endpoint": "total", "metric": "p50_ms", "ratio": 0.9, "ci95": [0.7, 1.2]})
    store.insert_change("c3", run_id="live", target="mini", seq=3, kind="set_knob", params={"knob": "workers"},
                        description="set knob workers = 2", risk="low")
    store.update_change("c3", "reverted", reason="switched off for an interleaved A window")
    for window_id, severity, share in (("w1", "medium", 0.2), ("w1", "high", 0.1), ("w2", "high", 0.6)):
        store.insert_finding("live", window_id, {"agent": "database", "kind": "missing_index" if share != 0.2 else "slow_query",
                                                 "location": "items.id", "endpoint": "item", "severity": severity,
                                                 "evidence": {}, "estimated_gain": {"db_time_share": share}, "candidate": None})
    store.save_live_window("live", {"label": "change-1-b1", "attempt": 1, "started_at": now(), "planned_s": 2.5,
                                    "elapsed_s": 1.2, "requests": 140, "errors": 0, "p50_ms": 4.0, "p95_ms": 9.5,
                                    "rps": 110.0, "done": False})
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report-done.html").write_text("<html>the report</html>")
    return TestClient(create_app(tmp_path / "store.duckdb"))


def test_runs_have_before_and_after_while_running_and_once_ended(client: TestClient) -> None:
    runs = {r["run_id"]: r for r in client.get("/api/runs").json()}
    assert list(runs)[:2] == ["live", "done"]  # newest first
    done, live = runs["done"], runs["live"]
    assert (done["status"], done["before_p95_ms"], done["after_p95_ms"], done["before_rps"], done["after_rps"]) == (
        "goals_met", 40.0, 20.0, 100.0, 150.0)
    assert done["report"] == "/reports/done" and live["report"] is None
    assert live["status"] == "running" and live["after_p95_ms"] is None
    assert live["before_p95_ms"] == pytest.approx(20.0) and live["before_rps"] == pytest.approx(99.0)  # its A/A windows
    assert (live["windows"], live["kept"]) == (3, 1)
    assert datetime.fromisoformat(live["started_at"]) == T0 + timedelta(hours=1)


def test_a_run_shows_its_live_window_windows_decisions_and_ranked_findings(client: TestClient) -> None:
    body = client.get("/api/runs/live").json()
    assert body["live"]["under_load"] and body["live"]["requests"] == 140 and body["live"]["label"] == "change-1-b1"
    windows = body["windows"]
    assert [w["label"] for w in windows] == ["baseline-1", "baseline-2", "change-1"]
    assert windows[0]["endpoints"]["item"] == {"requests": 100, "rps": 20.0, "p50_ms": 15.0, "p95_ms": 30.0,
                                               "p99_ms": 45.0, "error_rate": 0.0}
    assert windows[0]["total"]["p95_ms"] == 20.0 and not windows[2]["valid"] and windows[2]["reason"]
    c1, c2, c3 = body["changes"]
    assert (c3["status"], c3["journal_status"]) == ("on trial", "reverted")  # off for an A window, not decided
    assert (c1["status"], c1["ratio"], c1["ci95"], c1["reason"]) == ("kept", 0.4, [0.3, 0.5], "faster beyond noise")
    assert (c2["status"], c2["ratio"], c2["endpoint"]) == ("reverted", 0.9, "total") and "error_rate" in c2["reason"]
    findings = body["findings"]
    assert [(f["kind"], f["severity"], f["impact"]) for f in findings] == [("missing_index", "high", 0.6),
                                                                          ("slow_query", "medium", 0.2)]
    assert client.get("/api/runs/nope").status_code == 404


def test_a_targets_history_has_signature_series_and_regressions_judged(client: TestClient) -> None:
    assert client.get("/api/targets").json() == ["mini", "shop"]
    body = client.get("/api/targets/shop").json()
    assert [r["run_id"] for r in body["runs"]] == [f"hist-{d}" for d in range(4)]  # oldest first
    assert set(body["series"]) == {"catalog", "checkout", "total"}
    assert [p["run_id"] for p in body["series"]["catalog"]["p95_ms"]] == [f"hist-{d}" for d in range(4)]
    assert body["regressions"] == [] and body["kept"] == []  # four steady runs
    assert client.get("/api/targets/mini").json()["kept"][0]["ratio"] == 0.4
    assert client.get("/api/targets/nobody").status_code == 404


def test_the_page_its_chart_library_and_the_reports_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/vendor/chart.umd.js" in page.text and "/static/dashboard.js" in page.text
    script = client.get("/static/vendor/chart.umd.js")
    assert script.status_code == 200 and "Chart" in script.text and "cdn" not in page.text.lower()
    assert client.get("/reports/done").text == "<html>the report</html>"
    assert client.get("/reports/live").status_code == 404
    assert client.get("/reports/..%2Fstore.duckdb").status_code == 404


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    Store(tmp_path / "store.duckdb")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        proc = subprocess.run([str(Path(sys.executable).parent / "perfagents"), "dashboard", "--store",
                               str(tmp_path / "store.duckdb"), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
