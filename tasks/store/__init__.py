"""The DuckDB store: one file per project, one writer (the flow run), numbered migrations.

connection.py  the DuckDB connection, transactions, migrate, generic insert/query helpers
migrations.py  the schema, as numbered migrations
queries.py     ``Store``: every read and write on the store's tables (runs, windows,
               validations, the change journal, costs, kept target state)
signatures.py  run signatures, their history per target, the A/A windows (regressions)
learning.py    every tried change's estimate and measurement (learned candidate ranking)

The schema is documented for users in docs/store.md; every table is plain SQL to query.
"""

from __future__ import annotations

from tasks.store.connection import DEFAULT_STORE, Connection, dumps, now
from tasks.store.migrations import MIGRATIONS
from tasks.store.queries import Store

__all__ = ["DEFAULT_STORE", "MIGRATIONS", "Connection", "Store", "dumps", "now"]
