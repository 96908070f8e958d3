"""Server-rendered HTML pages: the home page and a product page.

Both reference ``/static/app.css`` and ``/static/app.js`` (large, served without
Cache-Control, and uncompressed unless SHOP_GZIP=1) the way a young shop's pages do:
the stylesheet and a render-blocking script in <head>.
"""

from __future__ import annotations

from html import escape
from typing import Any

HOME_PRODUCTS = 48

LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Young Shop</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js"></script>
</head>
<body>
<header class="site-header"><a class="logo" href="/">Young Shop</a>
<form class="search" action="/api/search"><input name="q" placeholder="Search products"></form></header>
<nav class="categories">{nav}</nav>
<main>{main}</main>
<footer class="site-footer">Young Shop · free shipping over $50 · 30-day returns</footer>
</body>
</html>
"""


def render_nav(categories: list[dict[str, Any]]) -> str:
    return "".join(f'<a href="/api/products?category={c["id"]}">{escape(c["name"])}</a>' for c in categories)


def render_card(product: dict[str, Any]) -> str:
    return (f'<article class="card"><a href="/products/{product["id"]}"><h3>{escape(product["name"])}</h3></a>'
            f'<p class="price">${product["price"]:.2f}</p><p>{escape(product["description"])}</p>'
            f'<button class="add-to-cart" data-product="{product["id"]}">Add to cart</button></article>')


def render_home(categories: list[dict[str, Any]], products: list[dict[str, Any]]) -> str:
    grid = "".join(render_card(p) for p in products)
    main = f'<h1>New arrivals</h1><section class="grid">{grid}</section>'
    return LAYOUT.format(title="Home", nav=render_nav(categories), main=main)


def render_review(review: dict[str, Any]) -> str:
    stars = "★" * review["rating"] + "☆" * (5 - review["rating"])
    return (f'<li class="review"><span class="stars">{stars}</span> <b>{escape(review["reviewer"])}</b> '
            f'<time>{review["created_at"][:10]}</time><p>{escape(review["body"])}</p></li>')


def render_product(categories: list[dict[str, Any]], product: dict[str, Any],
                   related: list[dict[str, Any]]) -> str:
    rating = f'{product["rating"]} / 5 ({product["review_count"]} reviews)' if product["rating"] else "No reviews yet"
    reviews = "".join(render_review(r) for r in product["reviews"])
    cards = "".join(render_card(p) for p in related)
    main = (f'<article class="product" data-product="{product["id"]}"><h1>{escape(product["name"])}</h1>'
            f'<p class="category">{escape(product["category"])} · {escape(product["sku"])}</p>'
            f'<p class="price">${product["price"]:.2f}</p><p class="rating">{rating}</p>'
            f'<p>{escape(product["description"])}</p>'
            f'<button class="add-to-cart" data-product="{product["id"]}">Add to cart</button></article>'
            f'<section><h2>Reviews</h2><ul class="reviews">{reviews}</ul></section>'
            f'<section><h2>You may also like</h2><div class="grid">{cards}</div></section>')
    return LAYOUT.format(title=escape(product["name"]), nav=render_nav(categories), main=main)
