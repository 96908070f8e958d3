"""A tiny target with a planted N+1 for the advisor's end-to-end tests: ``python -m app PORT``.

``/products/{id}/reviews`` reads a product's 80 reviews, then one customers query per review:
the N+1 the recorded answer fixes with one JOIN.
"""

from __future__ import annotations

import os
import sqlite3
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

DB = sqlite3.connect(os.environ["REVIEWS_DB"], check_same_thread=False)


def list_reviews(db: sqlite3.Connection, product_id: int) -> list[dict]:
    reviews = db.execute("SELECT id, customer_id, body FROM reviews WHERE product_id = ? ORDER BY id",
                         (product_id,)).fetchall()
    out = []
    for rid, customer_id, body in reviews:
        name = db.execute("SELECT name FROM customers WHERE id = ?", (customer_id,)).fetchone()[0]
        out.append({"id": rid, "reviewer": name, "body": body})
    return out


async def reviews(request: Request) -> JSONResponse:
    return JSONResponse(list_reviews(DB, int(request.path_params["product_id"])))


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/products/{product_id:int}/reviews", reviews), Route("/health", health)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
