"""The matrix app in Flask: sqlite3 (APP_DB) or PostgreSQL through psycopg2 (APP_PG_DSN).

GET /events?city=cN   events of a city: filters events.city, which has no index (planted)
GET /events/recent    the 20 latest events, then one venue lookup per event (planted N+1)
"""

import os

from flask import Flask, jsonify, request

app = Flask(__name__)
PG_DSN = os.environ.get("APP_PG_DSN")

if PG_DSN:
    import psycopg2

    def connect():
        return psycopg2.connect(PG_DSN)

    P = "%s"
else:
    import sqlite3

    def connect():
        return sqlite3.connect(os.environ["APP_DB"])

    P = "?"


def events_by_city(city):
    con = connect()
    try:
        cur = con.cursor()
        cur.execute("SELECT id, title FROM events WHERE city = " + P, (city,))
        return cur.fetchall()
    finally:
        con.close()


def recent_events_with_venues():
    con = connect()
    try:
        cur = con.cursor()
        cur.execute("SELECT id, title, venue_id FROM events ORDER BY id DESC LIMIT 20")
        out = []
        for event_id, title, venue_id in cur.fetchall():
            cur.execute("SELECT name FROM venues WHERE id = " + P, (venue_id,))
            out.append({"id": event_id, "title": title, "venue": cur.fetchone()[0]})
        return out
    finally:
        con.close()


@app.get("/events")
def events():
    return jsonify(events_by_city(request.args.get("city", "c1")))


@app.get("/events/recent")
def recent():
    return jsonify(recent_events_with_venues())


@app.get("/health")
def health():
    return "ok"
