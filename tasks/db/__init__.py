"""Talking to a target's database, below both the agents that read it and the changes that alter it.

    url.py        database URLs: their kind, the SQLite file, the check a user-given URL passes
    redact.py     passwords kept out of sight: redacted for display, stripped for storage, scrubbed from errors
    postgres.py   PostgreSQL connections, errors as one line
    ident.py      SQL identifiers and index DDL, quoted by psycopg.sql (PostgreSQL and SQLite)

Nothing is re-exported here: importing tasks.db.url or tasks.db.redact (as the spec does) must
not import psycopg.
"""
