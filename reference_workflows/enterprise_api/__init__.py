"""The enterprise API reference target: a JSON API with the bottlenecks real APIs have.

Modules: ``credentials`` (API client ids, their deterministic secrets, PBKDF2 hashing),
``seed`` (deterministic data into SQLite or PostgreSQL), ``database`` (a bounded connection
pool over SQLite or psycopg 3), ``settings`` (env knobs and the live config every worker
sees), ``auth`` (Bearer credential verification with an optional TTL cache), ``queries``
(the SQL), ``crm`` (a blocking SDK call), ``api`` (the Starlette app), ``app`` (the
production server), ``launch`` (run the server as a subprocess on a free port),
``locustfile`` (the load mix), ``pgcluster`` (a throwaway PostgreSQL cluster) and
``measure_bottlenecks`` (re-makes the numbers in BOTTLENECKS.md).

Keep this file import-free: the locustfile imports ``credentials`` inside a gevent process.
"""
