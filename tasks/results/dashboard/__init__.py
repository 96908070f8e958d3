"""The live dashboard (``perfagents dashboard``): a page on 127.0.0.1 that polls JSON built from the store.

views.py   what each view shows, as JSON, from the store's reads (tasks/store/views.py)
app.py     the Starlette app (``/api/runs``, ``/api/runs/{run_id}``, ``/api/targets/{target}``,
           the page, its static files, the runs' HTML reports) and ``serve`` (uvicorn)
static/    the page, its script and style, and Chart.js (vendored from npm with its license)

The store is opened per request, read-only, and closed (tasks/store/connection.py): a run
writing meanwhile is never blocked for long, and neither is the page.
"""

from __future__ import annotations

from tasks.results.dashboard.app import create_app, serve

__all__ = ["create_app", "serve"]
