"""A per-worker response cache for catalog GETs, keyed by full URL, with a live TTL.

An entry's freshness is judged with the TTL in force when it is read, so lowering the TTL
(or setting it to 0, which disables the cache) takes effect at once.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

MAX_ENTRIES = 20_000
CACHE_HEADER = "x-cache"
KEPT_HEADERS = ("content-type",)


@dataclass(frozen=True)
class CachedResponse:
    stored_at: float
    status: int
    body: bytes
    headers: dict[str, str]


class ResponseCache:
    """A bounded LRU of rendered responses; thread-safe (handlers run in a thread pool)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, ttl_s: float) -> CachedResponse | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if time.monotonic() - entry.stored_at >= ttl_s:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: str, response: Response) -> None:
        headers = {k: v for k, v in response.headers.items() if k in KEPT_HEADERS}
        entry = CachedResponse(time.monotonic(), response.status_code, bytes(response.body), headers)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


Handler = Callable[[Request], Response]


def cached(handler: Handler) -> Handler:
    """Wrap a sync GET handler: serve a fresh copy when the live TTL is > 0, store 200s.

    The cache and the TTL come from ``request.app.state.response_cache`` and
    ``request.app.state.live_config``.
    """

    @functools.wraps(handler)
    def wrapper(request: Request) -> Response:
        ttl = request.app.state.live_config.cache_ttl_s
        if ttl <= 0:
            return handler(request)
        cache: ResponseCache = request.app.state.response_cache
        key = str(request.url)
        hit = cache.get(key, ttl)
        if hit is not None:
            return Response(hit.body, status_code=hit.status, headers={**hit.headers, CACHE_HEADER: "HIT"})
        response = handler(request)
        if response.status_code == 200:
            cache.put(key, response)
        response.headers[CACHE_HEADER] = "MISS"
        return response

    return wrapper
