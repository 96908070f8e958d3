"""Catalog reads: product listing, product detail and its reviews.

The planted N+1 is ``fetch_reviews_n_plus_one``: one query for the reviews, then one
query per review for the reviewer's name. ``fetch_reviews_joined`` is the fix (same rows,
one query); the app uses the N+1 version, ``measure_bottlenecks`` times both.
"""

from __future__ import annotations

from typing import Any

from reference_workflows.ecommerce.db import Database

PAGE_SIZE = 24
MAX_PAGE_SIZE = 100
REVIEWS_SHOWN = 50
RELATED_SHOWN = 8
PRODUCT_COLUMNS = "id, name, category_id, price, description, sku"


def product_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "category_id": row[2], "price": row[3],
            "description": row[4], "sku": row[5]}


def list_categories(db: Database) -> list[dict[str, Any]]:
    return [{"id": r[0], "name": r[1], "slug": r[2]}
            for r in db.query("SELECT id, name, slug FROM categories ORDER BY id")]


def list_products(db: Database, page: int = 1, per_page: int = PAGE_SIZE,
                  category_id: int | None = None) -> dict[str, Any]:
    """One page of the catalog, optionally one category (products.category_id has no index)."""
    offset = (page - 1) * per_page
    if category_id is None:
        total = db.query("SELECT COUNT(*) FROM products")[0][0]
        rows = db.query(f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id LIMIT ? OFFSET ?",
                        (per_page, offset))
    else:
        total = db.query("SELECT COUNT(*) FROM products WHERE category_id = ?", (category_id,))[0][0]
        rows = db.query(
            f"SELECT {PRODUCT_COLUMNS} FROM products WHERE category_id = ? ORDER BY id LIMIT ? OFFSET ?",
            (category_id, per_page, offset))
    return {"page": page, "per_page": per_page, "total": total, "category_id": category_id,
            "items": [product_dict(r) for r in rows]}


def newest_products(db: Database, limit: int) -> list[dict[str, Any]]:
    return [product_dict(r) for r in db.query(
        f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id DESC LIMIT ?", (limit,))]


def fetch_reviews_n_plus_one(db: Database, product_id: int, limit: int = REVIEWS_SHOWN) -> list[dict[str, Any]]:
    """The planted N+1: the reviews, then one customers query per review."""
    reviews = db.query(
        "SELECT id, customer_id, rating, body, created_at FROM reviews WHERE product_id = ? "
        "ORDER BY created_at DESC LIMIT ?", (product_id, limit))
    out = []
    for rid, customer_id, rating, body, created_at in reviews:
        name = db.query("SELECT name FROM customers WHERE id = ?", (customer_id,))[0][0]
        out.append({"id": rid, "customer_id": customer_id, "reviewer": name, "rating": rating,
                    "body": body, "created_at": created_at})
    return out


def fetch_reviews_joined(db: Database, product_id: int, limit: int = REVIEWS_SHOWN) -> list[dict[str, Any]]:
    """The fix for the N+1: the same rows in one JOIN."""
    rows = db.query(
        "SELECT r.id, r.customer_id, c.name, r.rating, r.body, r.created_at FROM "
        "(SELECT id, customer_id, rating, body, created_at FROM reviews WHERE product_id = ? "
        " ORDER BY created_at DESC LIMIT ?) r "
        "JOIN customers c ON c.id = r.customer_id ORDER BY r.created_at DESC", (product_id, limit))
    return [{"id": r[0], "customer_id": r[1], "reviewer": r[2], "rating": r[3], "body": r[4],
             "created_at": r[5]} for r in rows]


def get_product(db: Database, product_id: int, *, joined_reviews: bool = False) -> dict[str, Any] | None:
    """Product detail with its category, rating summary and latest reviews.

    ``joined_reviews`` swaps in the N+1 fix; only measurements use it (SHOP_FIX_N_PLUS_ONE).
    """
    rows = db.query(
        f"SELECT p.{PRODUCT_COLUMNS.replace(', ', ', p.')}, c.name FROM products p "
        "JOIN categories c ON c.id = p.category_id WHERE p.id = ?", (product_id,))
    if not rows:
        return None
    product = product_dict(rows[0])
    product["category"] = rows[0][6]
    count, average = db.query(
        "SELECT COUNT(*), AVG(rating) FROM reviews WHERE product_id = ?", (product_id,))[0]
    product["review_count"] = count
    product["rating"] = round(average, 2) if average is not None else None
    fetch_reviews = fetch_reviews_joined if joined_reviews else fetch_reviews_n_plus_one
    product["reviews"] = fetch_reviews(db, product_id)
    return product


def related_products(db: Database, category_id: int, exclude_id: int, limit: int = RELATED_SHOWN) -> list[dict[str, Any]]:
    return [product_dict(r) for r in db.query(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE category_id = ? AND id != ? ORDER BY id LIMIT ?",
        (category_id, exclude_id, limit))]
