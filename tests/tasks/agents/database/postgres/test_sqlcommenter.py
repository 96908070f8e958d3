"""A PostgreSQL target the capture cannot see into (any language): its queries' sqlcommenter tags,
read from pg_stat_activity, name the endpoint of each finding. A real cluster, a real app."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.agents.database.agent import DatabaseAgent
from tasks.agents.database.postgres.sqlcommenter import TagVotes, endpoint_of, request_label, tags
from tasks.budget import Budget, Ledger
from tasks.changes.runtime import Runtime
from tasks.spec import TargetSpec
from tasks.target import attach_target

SEED = Path(__file__).resolve().parents[4] / "conformance" / "apps" / "seed.py"
_serving_spec = importlib.util.spec_from_file_location("perfagents_test_serving", Path(__file__).resolve().parents[1] / "serving.py")
serving = importlib.util.module_from_spec(_serving_spec)
_serving_spec.loader.exec_module(serving)

APP = textwrap.dedent(
    """
    import os, sys
    import psycopg
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    DSN = os.environ["APP_PG_DSN"]
    # what a sqlcommenter integration appends (its % doubled: psycopg formats the text)
    TAG = "/*controller='events',route='%%2Fevents%%2Fby-city'*/"

    def events(request):
        with psycopg.connect(DSN) as con:
            rows = con.execute("SELECT id, title FROM events WHERE city = %s " + TAG,
                               (request.query_params.get("city", "c1"),)).fetchall()
        return JSONResponse(len(rows))

    def health(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/events/by-city", events), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


def test_tags_are_parsed_and_labelled() -> None:
    query = "SELECT 1 /*action='show',controller='events',route='%2Fevents%2F%3Aid',traceparent='00-ab-cd-01'*/"
    assert tags(query)["route"] == "/events/:id" and tags("SELECT 1") == {}
    assert request_label(tags(query)) == "/events/:id"
    assert request_label({"controller": "events", "action": "show"}) == "events#show"
    votes = TagVotes()
    votes.add([(7, query), (7, query), (7, "SELECT 1 /*route='%2Fother'*/"), (8, "SELECT 2"), (None, query)])
    assert votes.to_dict() == {"7": {"/events/:id": 2, "/other": 1}}
    named, evidence = endpoint_of(votes.to_dict(), [7], [("event", "/events/{int:1:9}")], [])
    assert named == "/events/:id" and "sqlcommenter" in evidence["endpoint_attribution"]  # :id is no template of ours
    assert endpoint_of(votes.to_dict(), [8], [], [])[0] is None


@pytest.mark.postgres
def test_an_untraced_targets_index_finding_carries_the_endpoint_its_tags_name(tmp_path: Path, store,
                                                                              pg_cluster: str) -> None:
    from tasks import window as window_mod

    subprocess.run([sys.executable, str(SEED), "postgres", pg_cluster], check=True, timeout=120)
    (tmp_path / "app.py").write_text(APP)
    with serving.serve_uncaptured([sys.executable, "app.py", "{port}"], tmp_path, {"APP_PG_DSN": pg_cluster}) as url:
        spec = TargetSpec(name="tagged", base_url=url, spec_dir=tmp_path,
                          database={"url": pg_cluster, "allow_ddl": True},
                          load={"endpoints": [{"name": "events by city", "path": "/events/by-city?city=c{int:0:199}"}],
                                "users": 4, "spawn_rate": 20, "duration_s": 8, "warmup_s": 1})
        rt = Runtime(spec, tmp_path / "work", attach_target(spec), {}, pg_cluster)
        window = window_mod.measure_window(store, "run-1", rt, "profile-1", agents=[DatabaseAgent()],
                                           ledger=Ledger(Budget()), max_attempts=2)
    assert window.valid and window.stats["total"]["error_rate"] == 0, (window.reasons, window.stats["total"])
    outcome = window.agents[0]
    assert outcome.status == "ok", outcome.error
    found = [f for f in window.findings if f.kind == "missing_index"]
    assert len(found) == 1, [(f.kind, f.location, f.endpoint, f.evidence.get("endpoint_attribution")) for f in window.findings]
    index = found[0]
    assert index.location == "events.city" and index.endpoint == "events by city", index
    assert "sqlcommenter" in index.evidence["endpoint_attribution"]
    assert index.candidate is not None and index.candidate.endpoint == "events by city"
