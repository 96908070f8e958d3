"""Files injected into the target through PYTHONPATH (never imported by perfagents itself).

sitecustomize.py            installs the capture when PERFAGENTS_SQL_LOG is set, then chains
perfagents_sqlcapture.py    install(), import hooks, sqlite3 timing
perfagents_requestctx.py    the request a statement belongs to (ASGI/WSGI servers, frameworks, thread pools)
perfagents_capturelog.py    the record buffer and its JSONL writer thread (file and row format)
perfagents_callstack.py     the target's own call stack at a statement
perfagents_pgcapture.py     psycopg 3 statements and psycopg_pool waits (loaded only with psycopg)
perfagents_pgdrivers.py     psycopg2 and asyncpg statements (loaded only with them)

This __init__ only makes packaging (setuptools packages.find) ship the folder's modules: every
.py file here is part of the package ``tasks.agents.database.sqlcapture.inject``.
"""
