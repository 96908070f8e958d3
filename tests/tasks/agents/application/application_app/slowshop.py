"""A small real target for the application agent's tests (not a test module): ``python slowshop.py PORT``.

- /cpu              pure-Python CPU work in ``crunch_numbers`` (this module's own code)
- /blocking         an ``async def`` handler that calls ``time.sleep``: it blocks the event loop
- /quadratic?n=N    an O(n^2) pair count over N items
- /constant?n=N     O(1) whatever N is
- /big              a ~300 KB JSON body, never compressed
- /leak             keeps 256 KB per request for ever (steady RSS growth)
"""

from __future__ import annotations

import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

BIG = [{"id": i, "name": f"product number {i}", "description": "a long and repetitive description " * 2}
       for i in range(3000)]
RETAINED: list[bytes] = []
LEAK_BYTES = 256 * 1024


def crunch_numbers(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def count_equal_pairs(items: list[int]) -> int:
    pairs = 0
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if items[i] == items[j]:
                pairs += 1
    return pairs


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def cpu(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(crunch_numbers(int(request.query_params.get("rounds", "40000")))))


async def sleepy_handler(request: Request) -> PlainTextResponse:
    time.sleep(float(request.query_params.get("s", "0.02")))
    return PlainTextResponse("slept")


async def quadratic(request: Request) -> PlainTextResponse:
    n = int(request.query_params["n"])
    return PlainTextResponse(str(count_equal_pairs([i % 97 for i in range(n)])))


async def constant(request: Request) -> PlainTextResponse:
    n = int(request.query_params["n"])
    return PlainTextResponse(str(n % 97))


async def big(request: Request) -> JSONResponse:
    return JSONResponse(BIG)


async def leak(request: Request) -> PlainTextResponse:
    RETAINED.append(b"x" * LEAK_BYTES)  # written, so the pages count in RSS
    return PlainTextResponse(str(len(RETAINED)))


app = Starlette(routes=[
    Route("/health", health), Route("/cpu", cpu), Route("/blocking", sleepy_handler),
    Route("/quadratic", quadratic), Route("/constant", constant), Route("/big", big), Route("/leak", leak),
])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
