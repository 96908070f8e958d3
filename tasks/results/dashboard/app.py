"""The dashboard's web app (Starlette, served by uvicorn on 127.0.0.1): JSON behind every view and one
page that polls it, so it updates without reloading.

- ``GET /api/runs``: every run, newest first (tasks/results/dashboard/views.py ``runs_view``)
- ``GET /api/runs/{run_id}``: its live window, windows, changes (decisions) and findings
- ``GET /api/targets`` and ``GET /api/targets/{target}``: a target's history and regressions
- ``GET /reports/{run_id}``: the run's HTML report, when it wrote one
- ``GET /``: the page; ``/static/``: its script, style and Chart.js

Endpoints are plain functions, which Starlette runs on its thread pool; each opens the store
read-only for its reads only (tasks/store/connection.py). The regressions of a target are
computed again only when its signatures or A/A windows changed (RegressionCache), and any answer
is reused for FRESH_S, so many open pages do not multiply the reads.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tasks.errors import InputError, PerfagentsError
from tasks.results.dashboard.views import history_view, report_path, run_view, runs_view
from tasks.results.regressions import find_regressions
from tasks.store import Store

STATIC = Path(__file__).with_name("static")
HOST = "127.0.0.1"
READ_LOCK_TIMEOUT_S = 15.0  # a page request waits this long at most for a writer's transaction
FRESH_S = 0.5  # an answer is reused this long: any number of open pages cost the store at most 2 reads/s per view
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class RegressionCache:
    """``find_regressions`` per target, recomputed when the target's signature or A/A rows change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

    def __call__(self, store: Store, target: str) -> dict[str, Any]:
        key = (sum(1 for r in store.signature_history(target)), len(store.aa_window_stats(target)))
        with self._lock:
            hit = self._cached.get(target)
        if hit is not None and hit[0] == key:
            return hit[1]
        found = find_regressions(store, target)
        with self._lock:
            self._cached[target] = (key, found)
        return found


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers (Starlette refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def create_app(store_path: Path) -> Starlette:
    """The app over the store at ``store_path`` (StoreError when it is not a perfagents store)."""
    store = Store(store_path, read_only=True, lock_timeout_s=READ_LOCK_TIMEOUT_S)
    reports = store.path.parent / "reports"
    regressions = RegressionCache()
    recent: dict[str, tuple[float, Any]] = {}

    def answer(build: Callable[[], Any], missing: str, key: str) -> Response:
        hit = recent.get(key)
        if hit is not None and time.monotonic() - hit[0] < FRESH_S:
            body = hit[1]
        else:
            try:
                body = finite(build())
            except PerfagentsError as exc:  # the store held past the bound, or gone
                return JSONResponse({"error": str(exc)}, status_code=503)
            if len(recent) > 1000:  # made-up run ids must not grow it without bound
                recent.clear()
            recent[key] = (time.monotonic(), body)
        if body is None:
            return JSONResponse({"error": missing}, status_code=404)
        return JSONResponse(body)

    def runs(request: Request) -> Response:
        target = request.query_params.get("target")
        return answer(lambda: runs_view(store, reports, target), "no runs", f"runs:{target}")

    def run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        return answer(lambda: run_view(store, run_id, reports), f"no run {run_id!r} in the store", f"run:{run_id}")

    def targets(request: Request) -> Response:
        def build() -> list[str]:
            with store.session():
                return store.targets()
        return answer(build, "no targets", "targets")

    def history(request: Request) -> Response:
        target = request.path_params["target"]
        return answer(lambda: history_view(store, target, reports, regressions), f"no runs of target {target!r}",
                      f"target:{target}")

    def report(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        path = report_path(reports, run_id)
        if not _RUN_ID.match(run_id) or not path.is_file():
            return JSONResponse({"error": f"no HTML report of run {run_id!r}"}, status_code=404)
        return FileResponse(path, media_type="text/html")

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return Starlette(routes=[
        Route("/", page), Route("/api/runs", runs), Route("/api/runs/{run_id}", run),
        Route("/api/targets", targets), Route("/api/targets/{target}", history),
        Route("/reports/{run_id}", report), Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])


def listen(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (InputError when it cannot be)."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be between 1 and 65535, got {port}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from exc
    sock.listen(128)
    return sock


def serve(store_path: Path, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the dashboard on 127.0.0.1:``port`` until interrupted."""
    import uvicorn

    app = create_app(store_path)
    sock = listen(port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    if on_ready is not None:
        on_ready(f"http://{HOST}:{port}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
