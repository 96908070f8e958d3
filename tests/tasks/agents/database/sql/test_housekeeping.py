"""The stack's own statements (introspection, settings, probes) are set apart from the app's."""

from __future__ import annotations

import polars as pl
import pytest

from tasks.agents.database.findings import framework_overhead_finding
from tasks.agents.database.sql.housekeeping import housekeeping_mask, is_housekeeping, summarize
from tasks.agents.database.sql.stats import (
    add_statement_columns,
    attribute_requests,
    find_n_plus_one,
)
from tasks.agents.database.sqlcapture import STATEMENT_SCHEMA


@pytest.mark.parametrize("sql", [
    "PRAGMA table_xinfo(\"events\")", "pragma foreign_keys", "SELECT name FROM sqlite_master WHERE type='table'",
    "SELECT sql FROM sqlite_schema WHERE name = ?", "SET search_path TO public", "SHOW standard_conforming_strings",
    "select pg_catalog.version()", "SELECT current_schema()",
    "SELECT t.oid, typarray FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid WHERE typname = %s",
    "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
])
def test_introspection_settings_and_probes_are_housekeeping(sql):
    assert is_housekeeping(sql)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM events WHERE city = ?", "INSERT INTO settings (k, v) VALUES (?, ?)", "COMMIT",
    "SELECT version FROM releases WHERE id = ?", "UPDATE pg_typewriters SET n = 1",
])
def test_the_apps_own_statements_are_not(sql):
    assert not is_housekeeping(sql)


def test_per_request_introspection_is_one_finding_never_an_n_plus_one():
    rows = []
    for r in range(20):  # an ORM that reflects the table on every request, 6 times
        rows += [{"ts": r + k / 1000, "duration_ms": 0.4, "sql": f"SELECT sql FROM sqlite_master WHERE name = 't{k}'", "pid": 1, "thread": 1,
                  "request_id": f"r{r}", "path": "/events"} for k in range(6)]
        rows.append({"ts": r + 0.01, "duration_ms": 0.6, "sql": "SELECT * FROM events WHERE city = ?", "pid": 1,
                     "thread": 1, "request_id": f"r{r}", "path": "/events"})
    frame = attribute_requests(add_statement_columns(pl.DataFrame(
        [{k: row.get(k) for k in STATEMENT_SCHEMA} for row in rows], schema=STATEMENT_SCHEMA)))
    assert find_n_plus_one(frame)  # without the split, the reflection reads as an N+1 ...
    assert not find_n_plus_one(frame.filter(~housekeeping_mask(frame)))  # ... with it, nothing
    stats = [{"statement": "SELECT sql FROM sqlite_master WHERE name = ?", "calls": 120, "total_ms": 48.0},
             {"statement": "SELECT * FROM events WHERE city = ?", "calls": 20, "total_ms": 12.0}]
    summary = summarize(stats, db_time_ms=60.0)
    assert summary is not None and summary["share"] == 0.8 and summary["calls"] == 120
    finding = framework_overhead_finding(summary)
    assert finding is not None and finding.kind == "framework_overhead" and finding.severity == "medium"
    assert framework_overhead_finding(summarize(stats[1:], 60.0)) is None
