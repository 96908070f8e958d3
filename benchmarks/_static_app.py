"""The cheapest HTTP target uvicorn serves: ``python _static_app.py PORT``.

A bare ASGI callable (no framework, no routing, no lifespan) answering every request with the
same 2-byte body, under uvicorn with uvloop and httptools in one process: per request it costs
the server as little as a Python web stack can, so the load generator, not the target, is what
benchmarks/load_scaling.py pushes to its limit.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

BODY = b"ok"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                lifespan="off", log_level="warning", access_log=False)
