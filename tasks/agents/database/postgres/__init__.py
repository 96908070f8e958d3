"""The database agent on PostgreSQL targets: statistics deltas over the window, generic plans, what-ifs.

    agent.py        profile_postgres / findings_postgres, the PostgreSQL path of DatabaseAgent
    stats.py        pg_stat_statements and table/index statistics, snapshotted and turned into deltas
    plan.py         generic plans, the indexes they miss, HypoPG and estimated what-ifs
    analysis.py     one window analysed: the observations findings are made from
    activity.py     pg_stat_activity sampled during the window
    pool_waits.py   psycopg_pool waits the capture timed; the pool_saturation finding
"""

from __future__ import annotations

from tasks.agents.database.postgres.agent import findings_postgres, profile_postgres

__all__ = ["findings_postgres", "profile_postgres"]
