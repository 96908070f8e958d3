"""The conformance matrix (tests/conformance/matrix.py): each stack started as a run starts it, one
real profiling window, both planted problems found at the right location and endpoint, no false
finding ranked above them, the index's candidate aimed at its endpoint (what its trial judges).
One stack also goes through the whole loop: tests/flows/test_conformance_loop.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("perfagents_matrix", Path(__file__).with_name("matrix.py"))
matrix = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(matrix)


def _as_dicts(findings) -> list[dict]:
    return [{"kind": f.kind, "location": f.location, "endpoint": f.endpoint, "severity": f.severity,
             "candidate": f.candidate} for f in findings]


SMOKE_STACK = "flask-gunicorn-sync"  # the one stack the default `make test` profiles (Makefile)


@pytest.mark.e2e
@pytest.mark.parametrize("stack", [pytest.param(s, id=s.name, marks=[pytest.mark.smoke] if s.name == SMOKE_STACK else [])
                                   for s in matrix.STACKS])
def test_each_stack_planted_problems_found_at_their_location_and_endpoint(stack, tmp_path: Path, store,
                                                                          request: pytest.FixtureRequest) -> None:
    pg_dsn = request.getfixturevalue("pg_cluster") if stack.postgres else None
    window = matrix.profile_stack(stack, tmp_path / "work", store, pg_dsn)
    assert window.valid, window.reasons
    assert all(o.status == "ok" for o in window.agents), [(o.agent, o.error) for o in window.agents]
    findings = _as_dicts(window.findings)
    shown = [(f["severity"], f["kind"], f["location"], f["endpoint"]) for f in findings]
    check = matrix.check(findings, stack.planted)
    assert not check.missing, (check.missing, check.endpoint_of, shown)
    assert not check.false_above, shown
    index = findings[check.found[matrix.INDEX["id"]]]
    assert index["candidate"] is not None and index["candidate"].endpoint == matrix.EVENTS_BY_CITY  # judged there
