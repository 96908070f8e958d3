"""HTTP handlers: JSON API, HTML pages, health and admin config.

Read handlers are plain functions, so Starlette runs them in its thread pool (blocking
SQLite calls do not stall the event loop); handlers that read a body are async and hand
the database work to the pool. Only catalog, search and product GETs are ``@cached``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reference_workflows.ecommerce import catalog, orders, pages
from reference_workflows.ecommerce.db import Database
from reference_workflows.ecommerce.live_config import ConfigError
from reference_workflows.ecommerce.orders import ShopError
from reference_workflows.ecommerce.response_cache import cached
from reference_workflows.ecommerce.search import search_products

MAX_PAGE = 1_000
MAX_QUERY_CHARS = 200


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def int_param(raw: str | None, name: str, *, default: int | None = None, low: int = 1,
              high: int = 2**31) -> int | None:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ShopError(400, f"{name} must be an integer, got {raw!r}") from exc
    if not low <= value <= high:
        raise ShopError(400, f"{name} must be in {low}..{high}, got {value}")
    return value


def shop_db(request: Request) -> Database:
    return request.app.state.db


def product_detail(request: Request) -> dict[str, Any] | None:
    return catalog.get_product(shop_db(request), request.path_params["product_id"],
                               joined_reviews=request.app.state.settings.fix_n_plus_one)


def health(request: Request) -> JSONResponse:
    """200 while the database answers; the id ranges let a load script draw valid ids."""
    db = shop_db(request)
    products, customers = db.query("SELECT (SELECT MAX(id) FROM products), (SELECT MAX(id) FROM customers)")[0]
    return JSONResponse({"status": "ok", "pid": os.getpid(), "products": products, "customers": customers})


@cached
def api_products(request: Request) -> JSONResponse:
    q = request.query_params
    page = int_param(q.get("page"), "page", default=1, high=MAX_PAGE)
    per_page = int_param(q.get("per_page"), "per_page", default=catalog.PAGE_SIZE, high=catalog.MAX_PAGE_SIZE)
    category = int_param(q.get("category"), "category")
    assert page is not None and per_page is not None
    return JSONResponse(catalog.list_products(shop_db(request), page, per_page, category))


@cached
def api_search(request: Request) -> JSONResponse:
    query = request.query_params.get("q", "")[:MAX_QUERY_CHARS]
    return JSONResponse({"q": query, "items": search_products(shop_db(request), query)})


@cached
def api_product(request: Request) -> JSONResponse:
    product = product_detail(request)
    if product is None:
        return error(404, f"product {request.path_params['product_id']} not found")
    return JSONResponse(product)


@cached
def home_page(request: Request) -> HTMLResponse:
    db = shop_db(request)
    return HTMLResponse(pages.render_home(catalog.list_categories(db),
                                          catalog.newest_products(db, pages.HOME_PRODUCTS)))


@cached
def product_page(request: Request) -> HTMLResponse:
    db = shop_db(request)
    product = product_detail(request)
    if product is None:
        return HTMLResponse("<h1>Product not found</h1>", status_code=404)
    related = catalog.related_products(db, product["category_id"], product["id"])
    return HTMLResponse(pages.render_product(catalog.list_categories(db), product, related))


def api_customer_orders(request: Request) -> JSONResponse:
    return JSONResponse(orders.customer_orders(shop_db(request), request.path_params["customer_id"]))


async def read_json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except json.JSONDecodeError as exc:
        raise ShopError(400, f"request body is not JSON ({exc.msg})") from exc
    if not isinstance(body, dict):
        raise ShopError(400, "request body must be a JSON object")
    return body


def required_int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ShopError(400, f"{name} must be a positive integer")
    return value


async def api_cart_add(request: Request) -> JSONResponse:
    body = await read_json(request)
    cart = await run_in_threadpool(
        orders.add_to_cart, shop_db(request), required_int(body, "customer_id"),
        required_int(body, "product_id"), body.get("quantity", 1))
    return JSONResponse(cart, status_code=201)


async def api_checkout(request: Request) -> JSONResponse:
    body = await read_json(request)
    order = await run_in_threadpool(orders.checkout, shop_db(request), required_int(body, "customer_id"))
    return JSONResponse(order, status_code=201)


async def admin_config(request: Request) -> JSONResponse:
    live = request.app.state.live_config
    if request.method == "GET":
        return JSONResponse(live.values(fresh=True))
    body = await read_json(request)
    try:
        values = await run_in_threadpool(live.update, body)
    except ConfigError as exc:
        return error(400, str(exc))
    return JSONResponse(values)


async def shop_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShopError)
    return error(exc.status, str(exc))


def build_routes(static_dir: str) -> list[Route | Mount]:
    return [
        Route("/health", health),
        Route("/", home_page),
        Route("/products/{product_id:int}", product_page),
        Route("/api/products", api_products),
        Route("/api/products/{product_id:int}", api_product),
        Route("/api/search", api_search),
        Route("/api/customers/{customer_id:int}/orders", api_customer_orders),
        Route("/api/cart/items", api_cart_add, methods=["POST"]),
        Route("/api/checkout", api_checkout, methods=["POST"]),
        Route("/admin/config", admin_config, methods=["GET", "PUT"]),
        Mount("/static", StaticFiles(directory=static_dir), name="static"),
    ]
