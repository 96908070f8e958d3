"""Seed the tiny target's database: ``python seed.py DB``."""

from __future__ import annotations

import sqlite3
import sys

CUSTOMERS, PRODUCTS, REVIEWS_PER_PRODUCT = 3000, 20, 80

con = sqlite3.connect(sys.argv[1])
con.executescript("""
DROP TABLE IF EXISTS customers; DROP TABLE IF EXISTS reviews;
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE reviews (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL, customer_id INTEGER NOT NULL,
                      body TEXT);
CREATE INDEX reviews_product ON reviews (product_id);
""")
con.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                [(i, f"c{i}@example.com", f"customer {i}") for i in range(1, CUSTOMERS + 1)])
con.executemany("INSERT INTO reviews (product_id, customer_id, body) VALUES (?, ?, ?)",
                [(p, (p * 97 + r * 31) % CUSTOMERS + 1, f"review {r} of {p}")
                 for p in range(1, PRODUCTS + 1) for r in range(REVIEWS_PER_PRODUCT)])
con.commit()
con.close()
