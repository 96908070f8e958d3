"""Create the shop's SQLite database with deterministic, realistic volumes.

    python -m reference_workflows.ecommerce.seed --db PATH [--scale 1.0]

The file is recreated from scratch (written aside, then renamed into place); the same
``--seed`` and ``--scale`` give the same rows. Schema: primary keys and business
constraints only, as a young shop has them. Deliberately missing: an index on
``orders.customer_id`` (the customer-orders page filters on it) and on
``products.category_id``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from reference_workflows.ecommerce import vocabulary as vocab
from reference_workflows.ecommerce.live_config import config_path

RNG_SEED = 20240601
N_PRODUCTS = 20_000
N_CUSTOMERS = 20_000
N_ORDERS = 500_000
N_REVIEWS = 200_000
N_OPEN_CARTS = 1_000
MAX_ITEMS_PER_ORDER = 4
START_EPOCH_S = 1_609_459_200  # 2021-01-01T00:00:00Z
SPAN_S = 3 * 365 * 86_400

SCHEMA = """
CREATE TABLE categories (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE);
CREATE TABLE products (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, category_id INTEGER NOT NULL REFERENCES categories(id),
    price REAL NOT NULL, description TEXT NOT NULL, sku TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, city TEXT NOT NULL,
    address TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    created_at TEXT NOT NULL, status TEXT NOT NULL, total REAL NOT NULL,
    shipping_address TEXT NOT NULL, payment_method TEXT NOT NULL);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders(id), line_no INTEGER NOT NULL,
    product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL, PRIMARY KEY (order_id, line_no));
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id),
    customer_id INTEGER NOT NULL REFERENCES customers(id), rating INTEGER NOT NULL,
    body TEXT NOT NULL, created_at TEXT NOT NULL,
    UNIQUE (product_id, customer_id));
CREATE TABLE carts (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL UNIQUE REFERENCES customers(id),
    updated_at TEXT NOT NULL);
CREATE TABLE cart_items (
    cart_id INTEGER NOT NULL REFERENCES carts(id), product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL, PRIMARY KEY (cart_id, product_id));
"""


def scaled(count: int, scale: float) -> int:
    return max(10, int(round(count * scale)))


def iso_times(rng: np.random.Generator, n: int, *, sort: bool = False) -> list[str]:
    seconds = rng.integers(START_EPOCH_S, START_EPOCH_S + SPAN_S, n)
    if sort:
        seconds.sort()
    return np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s").tolist()


def popularity(rng: np.random.Generator, n: int, *, low_ids_first: bool = False) -> np.ndarray:
    """Skewed weights: a few products/customers get much more of the traffic.

    With ``low_ids_first`` the weights decrease with the id (product 1 is the bestseller),
    which is what the locustfile's bestseller share assumes.
    """
    weights = rng.lognormal(0.0, 1.0, n)
    if low_ids_first:
        weights = np.sort(weights)[::-1]
    return weights / weights.sum()


def seed_catalog(con: sqlite3.Connection, rng: np.random.Generator, n_products: int) -> np.ndarray:
    categories = [
        (i + 1, f"{group} {suffix}", f"{group}-{suffix}".lower().replace(" ", "-"))
        for i, (group, suffix) in enumerate(
            (g, s) for g in vocab.CATEGORY_GROUPS for s in vocab.CATEGORY_SUFFIXES)
    ]
    con.executemany("INSERT INTO categories VALUES (?, ?, ?)", categories)
    adj = rng.integers(0, len(vocab.ADJECTIVES), n_products).tolist()
    mat = rng.integers(0, len(vocab.MATERIALS), n_products).tolist()
    noun = rng.integers(0, len(vocab.NOUNS), n_products).tolist()
    cat = rng.integers(1, len(categories) + 1, n_products).tolist()
    prices = np.round(rng.lognormal(3.4, 0.8, n_products) + 0.99, 2)
    sentences = rng.integers(0, len(vocab.DESCRIPTION_SENTENCES), (n_products, 4)).tolist()
    created = iso_times(rng, n_products)
    rows = []
    for i in range(n_products):
        a, m, n = vocab.ADJECTIVES[adj[i]], vocab.MATERIALS[mat[i]], vocab.NOUNS[noun[i]]
        name = f"{a.capitalize()} {m.capitalize()} {n.capitalize()}"
        text = " ".join(vocab.DESCRIPTION_SENTENCES[s] for s in sentences[i])
        description = f"This {a} {n} in {m} is one of our {vocab.CATEGORY_GROUPS[(cat[i] - 1) // 10].lower()} picks. {text}"
        rows.append((i + 1, name, cat[i], float(prices[i]), description, f"SKU-{i + 1:06d}", created[i]))
    con.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return prices


def seed_customers(con: sqlite3.Connection, rng: np.random.Generator, n: int) -> list[str]:
    first = rng.integers(0, len(vocab.FIRST_NAMES), n).tolist()
    last = rng.integers(0, len(vocab.LAST_NAMES), n).tolist()
    city = rng.integers(0, len(vocab.CITIES), n).tolist()
    street = rng.integers(0, len(vocab.STREETS), n).tolist()
    number = rng.integers(1, 400, n).tolist()
    created = iso_times(rng, n)
    rows, addresses = [], []
    for i in range(n):
        f, la = vocab.FIRST_NAMES[first[i]], vocab.LAST_NAMES[last[i]]
        address = f"{number[i]} {vocab.STREETS[street[i]]}, {vocab.CITIES[city[i]]}"
        addresses.append(address)
        rows.append((i + 1, f"{f} {la}", f"{f}.{la}{i + 1}@example.com".lower(),
                     vocab.CITIES[city[i]], address, created[i]))
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", rows)
    return addresses


def seed_orders(con: sqlite3.Connection, rng: np.random.Generator, n_orders: int,
                n_customers: int, prices: np.ndarray, addresses: list[str]) -> None:
    n_products = len(prices)
    customer = rng.choice(n_customers, n_orders, p=popularity(rng, n_customers)) + 1
    n_items = rng.integers(1, MAX_ITEMS_PER_ORDER + 1, n_orders)
    total_items = int(n_items.sum())
    product = rng.choice(n_products, total_items, p=popularity(rng, n_products, low_ids_first=True)) + 1
    quantity = rng.integers(1, 4, total_items)
    unit_price = prices[product - 1]
    starts = np.concatenate(([0], np.cumsum(n_items)[:-1]))
    totals = np.round(np.add.reduceat(quantity * unit_price, starts), 2)
    order_id = np.repeat(np.arange(1, n_orders + 1), n_items)
    line_no = np.arange(total_items) - np.repeat(starts, n_items) + 1
    status = rng.integers(0, len(vocab.ORDER_STATUSES), n_orders).tolist()
    payment = rng.integers(0, len(vocab.PAYMENT_METHODS), n_orders).tolist()
    created = iso_times(rng, n_orders, sort=True)
    customers = customer.tolist()
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
        zip(range(1, n_orders + 1), customers, created,
            [vocab.ORDER_STATUSES[s] for s in status], totals.tolist(),
            [addresses[c - 1] for c in customers],
            [vocab.PAYMENT_METHODS[p] for p in payment], strict=True))
    con.executemany(
        "INSERT INTO order_items VALUES (?, ?, ?, ?, ?)",
        zip(order_id.tolist(), line_no.tolist(), product.tolist(), quantity.tolist(),
            unit_price.tolist(), strict=True))


def seed_reviews(con: sqlite3.Connection, rng: np.random.Generator, n_reviews: int,
                 n_products: int, n_customers: int) -> None:
    product = rng.choice(n_products, int(n_reviews * 1.05), p=popularity(rng, n_products, low_ids_first=True)) + 1
    customer = rng.integers(1, n_customers + 1, len(product))
    _, first = np.unique(product.astype(np.int64) * (n_customers + 1) + customer, return_index=True)
    keep = np.sort(first)[:n_reviews]
    product, customer = product[keep].tolist(), customer[keep].tolist()
    n = len(product)
    rating = rng.choice([1, 2, 3, 4, 5], n, p=[0.05, 0.07, 0.13, 0.35, 0.40]).tolist()
    picks = rng.integers(0, len(vocab.REVIEW_SENTENCES), (n, 3)).tolist()
    bodies = [" ".join(vocab.REVIEW_SENTENCES[s] for s in p) for p in picks]
    con.executemany(
        "INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?)",
        zip(range(1, n + 1), product, customer, rating, bodies, iso_times(rng, n), strict=True))


def seed_carts(con: sqlite3.Connection, rng: np.random.Generator, n_carts: int,
               n_customers: int, n_products: int) -> None:
    owners = rng.choice(n_customers, min(n_carts, n_customers), replace=False) + 1
    con.executemany("INSERT INTO carts VALUES (?, ?, ?)",
                    zip(range(1, len(owners) + 1), owners.tolist(), iso_times(rng, len(owners)), strict=True))
    items = {(cart, int(p)) for cart in range(1, len(owners) + 1)
             for p in rng.integers(1, n_products + 1, int(rng.integers(1, 4)))}
    con.executemany("INSERT INTO cart_items VALUES (?, ?, 1)", sorted(items))


def remove_database(db: Path) -> None:
    for leftover in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal"), config_path(db)):
        leftover.unlink(missing_ok=True)


def seed_database(db: Path | str, *, scale: float = 1.0, seed: int = RNG_SEED) -> dict[str, int]:
    """Recreate ``db`` with deterministic data; returns the row count of each table."""
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_name(db.name + ".seeding")
    partial.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    n_products, n_customers = scaled(N_PRODUCTS, scale), scaled(N_CUSTOMERS, scale)
    con = sqlite3.connect(partial, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-200000")
        con.executescript(SCHEMA)
        con.execute("BEGIN")
        prices = seed_catalog(con, rng, n_products)
        addresses = seed_customers(con, rng, n_customers)
        seed_orders(con, rng, scaled(N_ORDERS, scale), n_customers, prices, addresses)
        seed_reviews(con, rng, scaled(N_REVIEWS, scale), n_products, n_customers)
        seed_carts(con, rng, scaled(N_OPEN_CARTS, scale), n_customers, n_products)
        con.execute("COMMIT")
        con.execute("PRAGMA journal_mode=DELETE")
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        counts = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchall()[0][0] for t in tables}
    finally:
        con.close()
    remove_database(db)
    os.replace(partial, db)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the e-commerce reference database.")
    parser.add_argument("--db", required=True, type=Path, help="SQLite file to (re)create")
    parser.add_argument("--scale", type=float, default=1.0, help="volume multiplier (tests use 0.05)")
    parser.add_argument("--seed", type=int, default=RNG_SEED, help="RNG seed")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    started = time.perf_counter()
    counts = seed_database(args.db, scale=args.scale, seed=args.seed)
    summary = ", ".join(f"{t}={n}" for t, n in counts.items())
    print(f"seeded {args.db} in {time.perf_counter() - started:.1f} s: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
