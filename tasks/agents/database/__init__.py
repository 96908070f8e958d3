"""The database agent: what the target's SQL costs, and which index would measurably help.

    agent.py        DatabaseAgent, the plug-in; the SQLite path (PostgreSQL: postgres/)
    findings.py     finding builders both paths share (severity by DB-time share, n_plus_one)
    call_sites.py   where in the target's code a statement runs from (the captured stacks)
    sqlcapture/     the statement capture injected into the target, and its readers
    sql/            backend-neutral SQL: tokenizer, per-statement stats, request attribution, index names
    sqlite/         SQLite: window analysis, EXPLAIN QUERY PLAN, what-ifs on a copy, lock contention
    postgres/       PostgreSQL: statistics deltas, generic plans, HypoPG what-ifs, activity, pool waits
"""

from __future__ import annotations

from tasks.agents.database.agent import DatabaseAgent, endpoint_names

__all__ = ["DatabaseAgent", "endpoint_names"]
