"""The database agent on SQLite targets: one window's captured statements, analysed on the file.

    analysis.py   the window's observations: statements, endpoints, N+1, index candidates
    plan.py       EXPLAIN QUERY PLAN, full scans, the measured what-if on a copy, unused indexes
    locks.py      lock contention: cheap statements waiting behind writers
    util.py       find the file, open it read-only, quote checked names
"""

from __future__ import annotations

from tasks.agents.database.sqlite.analysis import analyze_sqlite
from tasks.agents.database.sqlite.locks import lock_contention
from tasks.agents.database.sqlite.plan import explain_plan, whatif_index
from tasks.agents.database.sqlite.util import connect_readonly, database_file

__all__ = ["analyze_sqlite", "connect_readonly", "database_file", "explain_plan", "lock_contention", "whatif_index"]
