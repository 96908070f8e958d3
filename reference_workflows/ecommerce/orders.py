"""Customer data: order history (the planted missing index), cart and checkout (writes).

``customer_orders`` filters ``orders`` by ``customer_id`` three times (lifetime summary,
loyalty tier, latest orders), as separate helpers do in a young code base; with no index
on ``orders.customer_id`` each one is a full scan of the table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reference_workflows.ecommerce.db import Database

ORDERS_SHOWN = 20
LOYALTY_TIERS = ((20, "gold"), (8, "silver"), (0, "bronze"))  # delivered orders needed
MAX_QUANTITY = 20


class ShopError(Exception):
    """A request the shop refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def customer_orders(db: Database, customer_id: int, limit: int = ORDERS_SHOWN) -> dict[str, Any]:
    """The customer's latest orders with their items, and lifetime count and spend."""
    if not db.query("SELECT 1 FROM customers WHERE id = ?", (customer_id,)):
        raise ShopError(404, f"customer {customer_id} not found")
    count, spent = db.query(
        "SELECT COUNT(*), COALESCE(SUM(total), 0) FROM orders WHERE customer_id = ?", (customer_id,))[0]
    tier = loyalty_tier(db, customer_id)
    orders = db.query(
        "SELECT id, created_at, status, total FROM orders WHERE customer_id = ? "
        "ORDER BY created_at DESC LIMIT ?", (customer_id, limit))
    items: dict[int, list[dict[str, Any]]] = {o[0]: [] for o in orders}
    if orders:
        marks = ",".join("?" * len(orders))
        for order_id, product_id, name, quantity, unit_price in db.query(
                "SELECT oi.order_id, oi.product_id, p.name, oi.quantity, oi.unit_price "
                f"FROM order_items oi JOIN products p ON p.id = oi.product_id WHERE oi.order_id IN ({marks}) "
                "ORDER BY oi.order_id, oi.line_no", list(items)):
            items[order_id].append({"product_id": product_id, "name": name, "quantity": quantity,
                                    "unit_price": unit_price})
    return {"customer_id": customer_id, "order_count": count, "lifetime_spend": round(spent, 2),
            "loyalty_tier": tier,
            "orders": [{"id": o[0], "created_at": o[1], "status": o[2], "total": o[3], "items": items[o[0]]}
                       for o in orders]}


def loyalty_tier(db: Database, customer_id: int) -> str:
    delivered = db.query("SELECT COUNT(*) FROM orders WHERE customer_id = ? AND status = 'delivered'",
                         (customer_id,))[0][0]
    return next(name for needed, name in LOYALTY_TIERS if delivered >= needed)


def check_quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise ShopError(400, f"quantity must be an integer in 1..{MAX_QUANTITY}")
    return quantity


def add_to_cart(db: Database, customer_id: int, product_id: int, quantity: int = 1) -> dict[str, Any]:
    """Add ``quantity`` of a product to the customer's cart (created on first use)."""
    quantity = check_quantity(quantity)
    with db.transaction():
        if not db.query("SELECT 1 FROM customers WHERE id = ?", (customer_id,)):
            raise ShopError(404, f"customer {customer_id} not found")
        if not db.query("SELECT 1 FROM products WHERE id = ?", (product_id,)):
            raise ShopError(404, f"product {product_id} not found")
        stamp = now_iso()
        cart_id = db.query(
            "INSERT INTO carts (customer_id, updated_at) VALUES (?, ?) "
            "ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at RETURNING id",
            (customer_id, stamp))[0][0]
        db.execute(
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (?, ?, ?) "
            "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = MIN(quantity + excluded.quantity, ?)",
            (cart_id, product_id, quantity, MAX_QUANTITY))
        lines, units = db.query(
            "SELECT COUNT(*), COALESCE(SUM(quantity), 0) FROM cart_items WHERE cart_id = ?", (cart_id,))[0]
    return {"cart_id": cart_id, "customer_id": customer_id, "lines": lines, "units": units}


def checkout(db: Database, customer_id: int, payment_method: str = "card") -> dict[str, Any]:
    """Turn the customer's cart into an order, in one transaction."""
    with db.transaction():
        customer = db.query("SELECT address FROM customers WHERE id = ?", (customer_id,))
        if not customer:
            raise ShopError(404, f"customer {customer_id} not found")
        lines = db.query(
            "SELECT ci.product_id, ci.quantity, p.price FROM carts c "
            "JOIN cart_items ci ON ci.cart_id = c.id JOIN products p ON p.id = ci.product_id "
            "WHERE c.customer_id = ? ORDER BY ci.product_id", (customer_id,))
        if not lines:
            raise ShopError(409, f"customer {customer_id} has an empty cart")
        total = round(sum(q * price for _, q, price in lines), 2)
        order_id = db.query(
            "INSERT INTO orders (customer_id, created_at, status, total, shipping_address, payment_method) "
            "VALUES (?, ?, 'pending', ?, ?, ?) RETURNING id",
            (customer_id, now_iso(), total, customer[0][0], payment_method))[0][0]
        for line_no, (product_id, quantity, price) in enumerate(lines, 1):
            db.execute("INSERT INTO order_items VALUES (?, ?, ?, ?, ?)",
                       (order_id, line_no, product_id, quantity, price))
        db.execute("DELETE FROM cart_items WHERE cart_id = (SELECT id FROM carts WHERE customer_id = ?)",
                   (customer_id,))
    return {"order_id": order_id, "customer_id": customer_id, "total": total, "lines": len(lines)}
