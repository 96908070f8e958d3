"""SQL as the database agent reads it, whatever the backend (SQLite or PostgreSQL).

    text.py         a small tokenizer: normalized statements, tables and filter columns
    stats.py        captured statements aggregated per statement and endpoint; N+1 patterns
    attribution.py  which Locust request a captured statement served
    naming.py       the names of the indexes perfagents proposes
"""

from __future__ import annotations

from tasks.agents.database.sql.attribution import attribute_time, load_named_statements
from tasks.agents.database.sql.naming import index_name
from tasks.agents.database.sql.stats import aggregate_statements, find_n_plus_one, map_endpoints
from tasks.agents.database.sql.text import normalize_sql, statement_kind, table_refs, tokenize

__all__ = [
    "aggregate_statements",
    "attribute_time",
    "find_n_plus_one",
    "index_name",
    "load_named_statements",
    "map_endpoints",
    "normalize_sql",
    "statement_kind",
    "table_refs",
    "tokenize",
]
