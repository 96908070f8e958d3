"""The conformance matrix's data: events (no index on city: the planted missing index) and venues.

    python seed.py sqlite PATH | python seed.py postgres DSN
"""

import sys

EVENTS = 60_000
VENUES = 300
CITIES = 200


def rows():
    events = [(i, f"c{i % CITIES}", f"event {i}", i % VENUES + 1) for i in range(1, EVENTS + 1)]
    venues = [(i, f"venue {i}") for i in range(1, VENUES + 1)]
    return events, venues


def seed_sqlite(path):
    import sqlite3

    events, venues = rows()
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE venues (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                      "CREATE TABLE events (id INTEGER PRIMARY KEY, city TEXT NOT NULL, title TEXT NOT NULL,"
                      " venue_id INTEGER NOT NULL REFERENCES venues(id));")
    con.executemany("INSERT INTO venues VALUES (?, ?)", venues)
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", events)
    con.commit()
    con.close()


def seed_postgres(dsn):
    import psycopg

    events, venues = rows()
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS venues")
        con.execute("CREATE TABLE venues (id int PRIMARY KEY, name text NOT NULL)")
        con.execute("CREATE TABLE events (id int PRIMARY KEY, city text NOT NULL, title text NOT NULL, "
                    "venue_id int NOT NULL REFERENCES venues(id))")
        with con.cursor().copy("COPY venues FROM STDIN") as copy:
            for row in venues:
                copy.write_row(row)
        with con.cursor().copy("COPY events FROM STDIN") as copy:
            for row in events:
                copy.write_row(row)
        con.execute("ANALYZE")


if __name__ == "__main__":
    (seed_sqlite if sys.argv[1] == "sqlite" else seed_postgres)(sys.argv[2])
