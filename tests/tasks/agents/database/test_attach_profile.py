"""Attached to a SQLite target the toolkit did not start (no capture): the missing index is still
found, from the SQL where the profiler saw time. A real gunicorn Flask app, a real window."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.agents.application.agent import ApplicationAgent
from tasks.agents.application.pyspy import find_pyspy
from tasks.agents.database.agent import PROFILE_SOURCE, DatabaseAgent
from tasks.agents.database.sqlite.from_profile import profiled_statements
from tasks.budget import Budget, Ledger
from tasks.changes.runtime import Runtime
from tasks.spec import TargetSpec
from tasks.target import attach_target

EVENTS = 150_000
_serving_spec = importlib.util.spec_from_file_location("perfagents_test_serving", Path(__file__).resolve().parents[0] / "serving.py")
serving = importlib.util.module_from_spec(_serving_spec)
_serving_spec.loader.exec_module(serving)

APP = textwrap.dedent(
    """
    import os, sqlite3
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    def events_by_city(city):
        con = sqlite3.connect(os.environ["APP_DB"])
        try:
            rows = con.execute(
                "SELECT id, title FROM events WHERE city = ? ORDER BY id LIMIT 20", (city,)
            ).fetchall()
        finally:
            con.close()
        return rows

    @app.get("/events")
    def events():
        return jsonify(events_by_city(request.args.get("city", "c1")))

    @app.get("/health")
    def health():
        return "ok"
    """
)


def seed(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, city TEXT, title TEXT)")
    con.executemany("INSERT INTO events VALUES (?, ?, ?)", ((i, f"c{i % 300}", f"event {i}") for i in range(EVENTS)))
    con.commit()
    con.close()


@pytest.fixture
def attached_app(tmp_path: Path):
    """A gunicorn Flask app started outside the toolkit (no capture), on SQLite."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP)
    db = app_dir / "app.db"
    seed(db)
    command = [str(Path(sys.executable).with_name("gunicorn")), "-w", "1", "-b", "127.0.0.1:{port}", "app:app"]
    with serving.serve_uncaptured(command, app_dir, {"APP_DB": str(db)}) as url:
        yield url, db


# alone: its finding rests on the CPU profile. Beside another xdist worker, on 2 cores, a 10 s
# window's CPU bursts once caught no sample of the target (CI; reproduced 1 in 4 with two busy loops).
@pytest.mark.alone
@pytest.mark.skipif(find_pyspy() is None, reason="py-spy is not installed")
def test_attached_sqlite_target_missing_index_found_from_the_profile(tmp_path: Path, store, attached_app) -> None:
    from tasks import window as window_mod

    url, db = attached_app
    spec = TargetSpec(name="attached-flask", base_url=url, spec_dir=tmp_path,
                      database={"url": f"sqlite:///{db}", "allow_ddl": True},
                      load={"endpoints": [{"name": "events by city", "path": "/events?city=c{int:1:299}"}],
                            "users": 4, "spawn_rate": 20, "duration_s": 10, "warmup_s": 1})
    handle = attach_target(spec)
    rt = Runtime(spec, tmp_path / "work", handle, {}, f"sqlite:///{db}")
    w = window_mod.measure_window(store, "run-1", rt, "profile-1", agents=[ApplicationAgent(), DatabaseAgent()],
                                  ledger=Ledger(Budget()), max_attempts=1)
    outcomes = {o.agent: o for o in w.agents}
    assert outcomes["database"].status == "ok", outcomes["database"].error
    assert outcomes["database"].observed["statements_captured"] == 0  # nothing was injected
    assert w.valid, w.reasons
    found = [f for f in w.findings if f.kind == "missing_index"]
    app = outcomes["application"]
    profile = (app.observed or {}).get("cpu_profile") or {}
    assert [f.location for f in found] == ["events.city"], (
        [(f.kind, f.location) for f in w.findings], app.status, app.error, profile.get("samples"),
        [(b["idle"], b["samples"], b["exit_code"], b["error"]) for b in (app.observed or {}).get("bursts", [])],
        outcomes["database"].observed.get("from_profile", {}).get("index_candidates"))
    finding = found[0]
    assert finding.evidence["sources"] == PROFILE_SOURCE and "CPU samples" in finding.evidence["share_basis"]
    assert finding.estimated_gain["ratio"] >= 2 and finding.candidate is not None
    assert finding.candidate.params == {"table": "events", "columns": ["city"], "name": finding.evidence["index"]}


def test_samples_are_filed_under_the_nearest_sql_literal_above_the_sampled_line(tmp_path: Path) -> None:
    source = tmp_path / "views.py"
    source.write_text(textwrap.dedent(
        """
        def report(con, day):
            totals = con.execute("SELECT sum(amount) FROM orders WHERE day = ?", (day,)).fetchone()
            query = (
                "SELECT customer_id, count(*) FROM orders "
                "WHERE day = ? GROUP BY customer_id"
            )
            rows = con.execute(query, (day,)).fetchall()
            tables = con.execute("SELECT name FROM sqlite_master").fetchall()
            return totals, rows, tables
        """))
    profile = {"samples": 100, "functions": [
        {"location": "views:report", "own": True, "file": str(source), "attributed": 90,
         "lines": [[3, 30], [8, 50], [9, 10]]},
        {"location": "views:cold", "own": True, "file": str(source), "attributed": 1, "lines": [[3, 1]]},
        {"location": "flask/app.py:dispatch", "own": False, "file": "/x/flask/app.py", "attributed": 9, "lines": []},
    ]}
    found = profiled_statements(profile)
    assert [(s["statement"].split(" FROM")[0], s["samples"], s["share"]) for s in found] == [
        ("SELECT customer_id, count(*)", 50, 0.5), ("SELECT sum(amount)", 30, 0.3)]  # sqlite_master: housekeeping
