"""The DuckDB store: one file per project, numbered migrations, shared by runs and readers.

Nothing holds the file between uses: each read or transaction takes its turn, opens the file
and closes it, waiting (bounded) for another process, so concurrent runs, the dashboard, ``history`` and
``regressions`` interleave on one file (docs/store.md, "Sharing the store").

connection.py  the DuckDB connection per use, transactions, migrate, generic insert/query helpers
turns.py       whose turn it is: a cross-process flock taken before opening (writers exclusive)
lock.py        opening the file while another process may hold it: bounded, jittered retries
migrations.py  the schema, as numbered migrations
queries.py     ``Store``: every read and write on the store's tables (runs, windows,
               validations, the change journal, costs, kept target state)
signatures.py  run signatures, their history per target, the A/A windows (regressions)
learning.py    every tried change's estimate and measurement (learned candidate ranking)
views.py       the live window's progress, and the dashboard's reads (runs, windows, changes, findings)

The schema is documented for users in docs/store.md; every table is plain SQL to query.
"""

from __future__ import annotations

from tasks.store.connection import DEFAULT_STORE, Connection, dumps, now
from tasks.store.migrations import MIGRATIONS
from tasks.store.queries import Store

__all__ = ["DEFAULT_STORE", "MIGRATIONS", "Connection", "Store", "dumps", "now"]
