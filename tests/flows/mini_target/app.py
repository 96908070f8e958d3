"""The mini target for deployment tests: ``python app.py PORT``.

Live knobs: ``PUT /admin/config {"cache": true}`` skips the 5 ms of work that ``/fast``
otherwise does, so the optimizer has one real, reversible change to try. ``flaky`` is a
harmful knob: ``/fast`` gets as quick, but every 5th ``/items`` request fails.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

WORK_S = 0.005
BODY = b"x" * 100
FLAKY_EVERY = 5  # with `flaky` on, every 5th /items request fails
CONFIG: dict[str, bool] = {"cache": False, "flaky": False}
_count = {"items": 0}
_counter = {"value": 0, "cached": None}


async def fast(request: Request) -> PlainTextResponse:
    if not (CONFIG["cache"] or CONFIG["flaky"]):
        await asyncio.sleep(WORK_S)
    return PlainTextResponse(BODY)


async def item(request: Request) -> JSONResponse:
    _count["items"] += 1
    if CONFIG["flaky"] and _count["items"] % FLAKY_EVERY == 0:
        return JSONResponse({"error": "flaky"}, status_code=500)
    return JSONResponse({"id": int(request.path_params["item_id"])})


async def config(request: Request) -> JSONResponse:
    if request.method == "PUT":
        body = await request.json()
        unknown = set(body) - set(CONFIG)
        if unknown:
            return JSONResponse({"error": f"unknown fields {sorted(unknown)}"}, status_code=400)
        CONFIG.update({k: bool(v) for k, v in body.items()})
    return JSONResponse(CONFIG)


async def counter(request: Request) -> JSONResponse:
    """A value writes change; with `cache` on, reads are served from a cache that writes do not
    invalidate: the stale-data bug a response-correctness check must catch."""
    if request.method == "POST":
        _counter["value"] += 1
        return JSONResponse({"value": _counter["value"]})
    if CONFIG["cache"]:
        if _counter["cached"] is None:
            _counter["cached"] = _counter["value"]
        return JSONResponse({"value": _counter["cached"]})
    _counter["cached"] = None
    return JSONResponse({"value": _counter["value"]})


app = Starlette(routes=[
    Route("/counter", counter, methods=["GET", "POST"]),
    Route("/fast", fast),
    Route("/items/{item_id:int}", item),
    Route("/admin/config", config, methods=["GET", "PUT"]),
])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
