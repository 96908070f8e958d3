"""The planted bottlenecks are where BOTTLENECKS.md says, on a small real database."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reference_workflows.ecommerce import catalog
from reference_workflows.ecommerce.db import Database
from reference_workflows.ecommerce.measure_bottlenecks import (
    count_queries,
    make_indexed_copy,
    measure_missing_index,
    measure_n_plus_one,
    query_plan,
)
from reference_workflows.ecommerce.orders import customer_orders
from reference_workflows.ecommerce.seed import seed_database


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("measure")
    db, indexed = folder / "shop.db", folder / "indexed.db"
    seed_database(db, scale=0.05)
    make_indexed_copy(db, indexed)
    return db, indexed


def test_index_changes_the_plan_not_the_answer(dbs: tuple[Path, Path]) -> None:
    db, indexed = dbs
    sql = "SELECT id FROM orders WHERE customer_id = ?"
    assert query_plan(db, sql).startswith("SCAN orders")
    assert "idx_orders_customer_id" in query_plan(indexed, sql)
    for customer in (1, 17, 500):
        assert customer_orders(Database(db), customer) == customer_orders(Database(indexed), customer)


def test_missing_index_report_compares_both_databases(dbs: tuple[Path, Path]) -> None:
    db, indexed = dbs
    report = measure_missing_index(db, indexed, random.Random(0).sample(range(1, 1001), 5))
    assert report["location"] == "orders.customer_id"
    assert report["without_index"]["calls"] == report["with_index"]["calls"] == 5
    assert report["ratio"] > 1  # a full scan of 25k rows vs an index probe, same run


def test_n_plus_one_is_one_query_per_review(dbs: tuple[Path, Path]) -> None:
    db, _ = dbs
    shop = Database(db)
    report = measure_n_plus_one(db)
    reviews = catalog.fetch_reviews_joined(shop, report["product_id"])
    assert len(reviews) > 1
    assert report["n_plus_one"]["queries"] == 1 + len(reviews)
    assert report["joined"]["queries"] == 1
    assert catalog.fetch_reviews_n_plus_one(shop, report["product_id"]) == reviews
    assert count_queries(shop, lambda: catalog.get_product(shop, report["product_id"])) == 3 + len(reviews)
