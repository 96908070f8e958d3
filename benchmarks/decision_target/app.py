"""The decision benchmark's target: ``python app.py PORT``.

Every request does a little CPU work and waits on a simulated backend call. Two live knobs:

- ``noop`` is read by nothing: switching it is a null change (true ratio 1);
- ``lean`` skips an extra backend wait of LEAN_SAVES_S: a real, modest gain whose true size
  benchmarks/decisions.py measures over all of its windows.
"""

from __future__ import annotations

import asyncio
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

CPU_S = 0.0003  # busy work per request
BACKEND_S = 0.003  # the backend call every request waits on
LEAN_SAVES_S = 0.0016  # the extra backend wait `lean` skips: 1.3 ms measured 1.20x on the median, 1.6 ms 1.41x, 2 ms 1.47x (2026-12-04)
CONFIG: dict[str, bool] = {"noop": False, "lean": False}
BODY = b"x" * 512


async def work(request: Request) -> PlainTextResponse:
    end = time.perf_counter() + CPU_S
    while time.perf_counter() < end:
        pass
    await asyncio.sleep(BACKEND_S if CONFIG["lean"] else BACKEND_S + LEAN_SAVES_S)
    return PlainTextResponse(BODY)


async def config(request: Request) -> JSONResponse:
    if request.method == "PUT":
        body = await request.json()
        unknown = set(body) - set(CONFIG)
        if unknown:
            return JSONResponse({"error": f"unknown fields {sorted(unknown)}"}, status_code=400)
        CONFIG.update({k: bool(v) for k, v in body.items()})
    return JSONResponse(CONFIG)


app = Starlette(routes=[Route("/work/{n:int}", work), Route("/admin/config", config, methods=["GET", "PUT"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
