"""The conformance matrix: one small app with a planted missing index and a planted N+1, under the
stacks users run, plus a published third-party app (datasette) with a planted missing index.

Each stack is a target spec the toolkit starts itself (so its capture is injected, as in a
run); ``profile_stack`` measures one profiling window with every agent that applies and returns
the findings ranked as a run ranks them. Shared by tests/conformance/test_matrix.py and
benchmarks/diagnosis.py (precision and recall over every planted problem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPS = Path(__file__).resolve().parent / "apps"
EVENTS_BY_CITY = "events by city"
RECENT_EVENTS = "recent events"
# a load the slowest stack sustains (the latency regime: judged on each endpoint's latency)
LOAD = {"users": 6, "spawn_rate": 20, "duration_s": 12, "warmup_s": 2, "think_time_s": [0.05, 0.1]}
ENDPOINTS = [{"name": EVENTS_BY_CITY, "path": "/events?city=c{int:0:199}", "weight": 1},
             {"name": RECENT_EVENTS, "path": "/events/recent", "weight": 1}]
INDEX = {"id": "missing index events.city", "kind": "missing_index",
         "location": r"(public\.)?events(\.city|\(city(,\w+)*\))", "endpoint": EVENTS_BY_CITY}


def n_plus_one(location: str) -> dict[str, str]:
    return {"id": "N+1 venue per event", "kind": "n_plus_one", "location": location, "endpoint": RECENT_EVENTS}


# true observations of the planted problems seen from another angle (never counted as false)
ALSO_TRUE = [
    {"kind": "slow_query", "location": r".*events.*|.*:(events|events_by_city)"},
    {"kind": "slow_query", "location": r"venues|.*:recent.*"},  # the N+1's statement: its many calls add up
    {"kind": "hot_function", "location": r"(flask_app|django_app|fastapi_app):[\w.<>]+"},
    {"kind": "framework_overhead", "location": ".*"},
    {"kind": "cpu_saturation", "location": "target:.*"},
    {"kind": "db_time_share", "location": ".*"},
    # measured, not planted: with a new psycopg2 connection per request on gthread workers the
    # worker's RSS rises linearly (r2 0.999, about 45 MB/min over 10 s windows)
    {"kind": "memory_growth", "location": "target:.*psycopg2.*"},
]


@dataclass
class Stack:
    name: str
    start: list[str]  # the start command ({port} filled by the toolkit)
    planted: list[dict[str, str]]
    env: dict[str, str] = field(default_factory=dict)
    postgres: bool = False
    endpoints: list[dict[str, Any]] = field(default_factory=lambda: ENDPOINTS)


GUNICORN = ["gunicorn", "-b", "127.0.0.1:{port}", "--timeout", "60"]
STACKS = [
    Stack("flask-gunicorn-sync", [*GUNICORN, "-w", "1", "flask_app:app"],
          [INDEX, n_plus_one(r"flask_app:recent_events_with_venues")]),
    Stack("flask-gunicorn-gthread", [*GUNICORN, "-w", "1", "-k", "gthread", "--threads", "4", "flask_app:app"],
          [INDEX, n_plus_one(r"flask_app:recent_events_with_venues")]),
    Stack("django-gunicorn", [*GUNICORN, "-w", "1", "django_app:application"],
          [INDEX, n_plus_one(r"django_app:(recent|<listcomp>)")]),
    Stack("fastapi-uvicorn-sqlalchemy", ["python", "-m", "uvicorn", "fastapi_app:app", "--port", "{port}",
                                         "--log-level", "warning"],
          [INDEX, n_plus_one(r"fastapi_app:(recent|<listcomp>)")]),
    Stack("flask-gunicorn-psycopg2-postgres", [*GUNICORN, "-w", "1", "-k", "gthread", "--threads", "4", "flask_app:app"],
          [INDEX, n_plus_one(r"flask_app:recent_events_with_venues")], postgres=True),
    Stack("datasette (third-party)", ["datasette", "serve", "{workdir}/matrix.db", "--port", "{port}",
                                      "--setting", "sql_time_limit_ms", "5000", "--setting", "num_sql_threads", "3"],
          [INDEX], endpoints=[{"name": EVENTS_BY_CITY, "path": "/matrix/events.json?city=c{int:0:199}&_shape=array"}]),
]


def spec_for(stack: Stack, pg_dsn: str | None = None) -> dict[str, Any]:
    """The target spec (as parsed YAML) of one stack."""
    env = {"APP_DB": "{workdir}/matrix.db", **stack.env}
    if stack.postgres:
        assert pg_dsn, "a PostgreSQL stack needs a DSN"
        env["APP_PG_DSN"] = pg_dsn
        setup = [["python", "seed.py", "postgres", pg_dsn]]
        database = {"url": pg_dsn, "allow_ddl": True}
    else:
        setup = [["python", "seed.py", "sqlite", "{workdir}/matrix.db"]]
        database = {"url": "sqlite:///{workdir}/matrix.db", "allow_ddl": True}
    return {"name": re.sub(r"[^a-z0-9]+", "-", stack.name.lower()).strip("-"), "base_url": "http://127.0.0.1:{port}",
            "start": {"command": stack.start, "cwd": str(APPS), "env": env, "ready_path": "/health"
                      if not stack.name.startswith("datasette") else "/-/versions.json", "ready_timeout_s": 60},
            "setup": setup, "database": database, "load": {**LOAD, "endpoints": stack.endpoints}}


def profile_stack(stack: Stack, workdir: Path, store: Any, pg_dsn: str | None = None) -> Any:
    """Start the stack as a run does, measure one profiling window with every agent; the Window."""
    from tasks import window as window_mod
    from tasks.agents.registry import agents_for, capture_env_for
    from tasks.budget import Budget, Ledger
    from tasks.changes.runtime import Runtime
    from tasks.results.report import ranked_findings
    from tasks.spec import TargetSpec
    from tasks.target import database_url, run_setup, start_target, stop_target

    spec = TargetSpec.model_validate({**spec_for(stack, pg_dsn), "spec_dir": APPS})
    agents = agents_for(spec, only=["database", "application"])
    env = capture_env_for(agents, workdir)
    run_setup(spec, workdir)
    handle = start_target(spec, workdir, {}, extra_env=env)
    try:
        rt = Runtime(spec, workdir, handle, {}, database_url(spec, workdir, handle.port), env)
        window = window_mod.measure_window(store, "matrix", rt, "profile-1", agents=agents,
                                           ledger=Ledger(Budget()), max_attempts=2)
    finally:
        stop_target(handle)
    window.findings = ranked_findings(window.findings)
    return window


@dataclass
class Check:
    found: dict[str, int]  # planted id -> rank
    missing: list[str]
    false: list[tuple[int, dict[str, Any]]]
    endpoint_of: dict[str, str | None]  # planted id -> the endpoint its finding carries

    @property
    def false_above(self) -> list[tuple[int, dict[str, Any]]]:
        last = max(self.found.values(), default=-1)
        return [(rank, f) for rank, f in self.false if rank < last]


def _matches(rule: dict[str, str], finding: dict[str, Any], *, with_endpoint: bool = True) -> bool:
    if finding["kind"] != rule["kind"] or not re.fullmatch(rule["location"], str(finding["location"])):
        return False
    return not with_endpoint or "endpoint" not in rule or finding.get("endpoint") == rule["endpoint"]


def check(findings: list[dict[str, Any]], planted: list[dict[str, str]]) -> Check:
    """Which planted problems the ranked findings name at the right location and endpoint."""
    found, missing, endpoint_of = {}, [], {}
    for rule in planted:
        rank = next((i for i, f in enumerate(findings) if _matches(rule, f)), None)
        near = next((f for f in findings if _matches(rule, f, with_endpoint=False)), None)
        endpoint_of[rule["id"]] = near.get("endpoint") if near else None
        if rank is None:
            missing.append(rule["id"])
        else:
            found[rule["id"]] = rank
    false = [(i, f) for i, f in enumerate(findings)
             if not any(_matches(r, f, with_endpoint=False) for r in [*planted, *ALSO_TRUE])]
    return Check(found, missing, false, endpoint_of)
