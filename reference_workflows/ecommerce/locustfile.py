"""The shop's load mix: shoppers who browse, search, read products, buy, and check orders.

Request names (stable, used in goals such as ``p95_ms[customer_orders]<=50``): catalog,
home, search, product, product_page, customer_orders, cart_add, checkout, static.
Ids are drawn within the seeded ranges, read once from ``/health`` (fallback: the full
seed's volumes).
"""

from __future__ import annotations

import json
import random
import sys
import urllib.request
from pathlib import Path

from locust import FastHttpUser, between, task

try:
    from reference_workflows.ecommerce import vocabulary
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from reference_workflows.ecommerce import vocabulary

WAIT_S = (0.05, 0.3)  # think time between a shopper's actions
CATALOG_PAGES = 20
CATEGORIES = 100
CATEGORY_BROWSE_SHARE = 0.7
FIRST_PAGE_SHARE = 0.7
# Real search logs are head-heavy: most searches repeat one of a few popular queries.
POPULAR_QUERIES = 40
POPULAR_SHARE = 0.9  # of searches are a popular query, drawn by its rank (Zipf, s = 1) ...
ZIPF_S = 1.0  # ... the rest are fresh 1-2 term queries from the whole vocabulary
BESTSELLER_SHARE = 0.8  # of product views go to ...
BESTSELLER_FRACTION = 0.02  # ... the first 2% of the catalog
FALLBACK_RANGES = {"products": 20_000, "customers": 20_000}
_ranges: dict[str, int] = {}
POPULAR = vocabulary.popular_queries(POPULAR_QUERIES)  # most popular first
POPULAR_WEIGHTS = vocabulary.zipf_weights(POPULAR_QUERIES, ZIPF_S)


def id_ranges(host: str) -> dict[str, int]:
    """Highest product and customer id, asked once per Locust process."""
    if not _ranges:
        try:
            with urllib.request.urlopen(f"{host}/health", timeout=10) as response:
                health = json.load(response)
            _ranges.update(products=int(health["products"]), customers=int(health["customers"]))
        except (OSError, ValueError, KeyError):
            _ranges.update(FALLBACK_RANGES)
    return _ranges


class Shopper(FastHttpUser):
    wait_time = between(*WAIT_S)

    def on_start(self) -> None:
        ranges = id_ranges(self.host or "")
        self.n_products = ranges["products"]
        self.n_customers = ranges["customers"]
        self.customer_id = random.randint(1, self.n_customers)

    def product_id(self) -> int:
        """Skewed like real traffic: most views go to a few bestsellers."""
        if random.random() < BESTSELLER_SHARE:
            return random.randint(1, max(1, int(self.n_products * BESTSELLER_FRACTION)))
        return random.randint(1, self.n_products)

    @task(10)
    def home(self) -> None:
        self.client.get("/", name="home")

    @task(4)
    def static(self) -> None:
        """A first visit: the page's stylesheet and script (nothing cached)."""
        self.client.get("/static/app.css", name="static")
        self.client.get("/static/app.js", name="static")

    @task(20)
    def catalog(self) -> None:
        """Category pages, mostly their first page, or the whole catalog's pages."""
        if random.random() < CATEGORY_BROWSE_SHARE:
            page = 1 if random.random() < FIRST_PAGE_SHARE else random.randint(2, 5)
            self.client.get(f"/api/products?category={random.randint(1, CATEGORIES)}&page={page}",
                            name="catalog")
        else:
            self.client.get(f"/api/products?page={random.randint(1, CATALOG_PAGES)}", name="catalog")

    @task(10)
    def search(self) -> None:
        """Mostly a popular query (a response cache serves those), sometimes a fresh one."""
        if random.random() < POPULAR_SHARE:
            query = random.choices(POPULAR, weights=POPULAR_WEIGHTS)[0]
        else:
            query = vocabulary.random_query(random)  # the module's generator: unseeded, so each run differs
        self.client.get(f"/api/search?q={query}", name="search")

    @task(15)
    def product(self) -> None:
        self.client.get(f"/api/products/{self.product_id()}", name="product")

    @task(10)
    def product_page(self) -> None:
        self.client.get(f"/products/{self.product_id()}", name="product_page")

    @task(6)
    def customer_orders(self) -> None:
        """A signed-in shopper opens 'my orders' (any of the seeded customers)."""
        self.client.get(f"/api/customers/{random.randint(1, self.n_customers)}/orders", name="customer_orders")

    @task(6)
    def cart_add(self) -> None:
        self.add_to_cart()

    @task(2)
    def checkout(self) -> None:
        self.add_to_cart()
        with self.client.post("/api/checkout", json={"customer_id": self.customer_id}, name="checkout",
                              catch_response=True) as response:
            if response.status_code == 409:  # another shopper with the same account emptied the cart
                response.success()

    def add_to_cart(self) -> None:
        self.client.post("/api/cart/items", name="cart_add",
                         json={"customer_id": self.customer_id, "product_id": self.product_id(),
                               "quantity": random.randint(1, 3)})
