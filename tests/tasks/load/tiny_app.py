"""A tiny real HTTP app for load tests: ``python tiny_app.py PORT``."""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

BODY = b"x" * 100


async def fast(request: Request) -> PlainTextResponse:
    return PlainTextResponse(BODY)


async def boom(request: Request) -> PlainTextResponse:
    return PlainTextResponse("broken", status_code=500)


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": int(request.path_params["item_id"]), "page": request.query_params.get("page")})


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": await request.json()})


async def slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "0.05")))
    return PlainTextResponse("slow")


app = Starlette(routes=[
    Route("/health", fast),
    Route("/fast", fast),
    Route("/boom", boom),
    Route("/items/{item_id:int}", item),
    Route("/echo", echo, methods=["POST"]),
    Route("/slow", slow),
])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
