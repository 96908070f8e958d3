"""The enterprise API: an async Starlette app over a bounded connection pool.

Endpoints (``/api/*`` need ``Authorization: Bearer <client_id>:<secret>``, else 401):
    GET  /health                       liveness, no database
    GET  /admin/config                 live settings + start-time ones (pool_size, workers, gzip)
    PUT  /admin/config                 {"auth_cache_ttl_s": N}, in force in every worker in < 1 s
    GET  /admin/stats                  this worker's pool and auth counters
    GET  /api/invoices?page=N&size=50  OFFSET pagination ordered by created_at
    GET  /api/reports/revenue?from=YYYY-MM-DD&to=YYYY-MM-DD
    GET  /api/accounts/{id}            the account + its CRM risk rating (a blocking call)
    POST /api/invoices                 {"account_id", "amount", ...}: invoice + balance + audit row
    GET  /api/export?limit=5000        the latest invoices as one large JSON array

``create_app`` reads its settings from the environment (see ``settings``); the admin
endpoints are unauthenticated, as this target only ever listens on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_workflows.enterprise_api import queries
from reference_workflows.enterprise_api.auth import Authenticator, AuthError, Client
from reference_workflows.enterprise_api.crm import lookup_risk_rating
from reference_workflows.enterprise_api.database import (
    DatabaseError,
    PoolTimeoutError,
    create_pool,
    parse_db_url,
)
from reference_workflows.enterprise_api.settings import (
    LIVE_DEFAULTS,
    LiveConfig,
    Settings,
    SettingsError,
    read_settings,
    write_live_file,
)

GZIP_MIN_BYTES = 1_000
LAUNCHER_PID_ENV = "API_LAUNCHER_PID"
PR_SET_PDEATHSIG = 1
SEEDED_CHECK_SQL = "SELECT COUNT(*) FROM api_clients"


def query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise queries.ApiError(400, f"{name} must be an integer, got {raw!r}") from exc


async def authenticate(request: Request, scope: str) -> Client:
    client = await request.app.state.auth.authenticate(request.headers.get("authorization"))
    if scope not in client.scopes:
        raise queries.ApiError(403, f"client {client.client_id} lacks scope {scope}")
    return client


async def read_json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise queries.ApiError(400, "request body is not valid JSON") from exc


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def config_view(request: Request) -> dict[str, Any]:
    state = request.app.state
    settings: Settings = state.settings
    return {**state.live.values, "pool_size": settings.pool_size, "workers": settings.workers,
            "gzip": settings.gzip, "gzip_level": settings.gzip_level, "backend": state.pool.backend,
            "pid": os.getpid()}


async def admin_config(request: Request) -> Response:
    if request.method == "PUT":
        request.app.state.live.update(await read_json(request))
    else:
        request.app.state.live.refresh()  # read-your-writes across workers, not just within 0.25 s
    return JSONResponse(config_view(request))


async def admin_stats(request: Request) -> Response:
    state = request.app.state
    return JSONResponse({"pid": os.getpid(), "auth_cache_ttl_s": state.live.auth_cache_ttl_s,
                         "pool": state.pool.stats(), "auth": state.auth.stats()})


async def invoices(request: Request) -> Response:
    pool = request.app.state.pool
    if request.method == "POST":
        client = await authenticate(request, "invoices:write")
        invoice = await queries.create_invoice(pool, await read_json(request), client.client_id)
        return JSONResponse(invoice, status_code=201)
    await authenticate(request, "invoices:read")
    page = query_int(request, "page", 1)
    size = query_int(request, "size", queries.PAGE_SIZE)
    return JSONResponse(await queries.list_invoices(pool, page, size))


async def revenue_report(request: Request) -> Response:
    await authenticate(request, "reports:read")
    params = request.query_params
    return JSONResponse(await queries.revenue_report(request.app.state.pool, params.get("from"), params.get("to")))


async def get_account(request: Request) -> Response:
    await authenticate(request, "accounts:read")
    account_id = int(request.path_params["account_id"])
    account = await queries.fetch_account(request.app.state.pool, account_id)
    # Planted: a synchronous SDK call straight on the event loop (see crm.py).
    account["risk_rating"] = lookup_risk_rating(account_id)
    return JSONResponse(account)


async def export(request: Request) -> Response:
    await authenticate(request, "invoices:read")
    limit = query_int(request, "limit", queries.EXPORT_ROWS)
    return JSONResponse(await queries.export_invoices(request.app.state.pool, limit))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, queries.ApiError)
    return error_response(exc.status, str(exc))


async def on_auth_error(request: Request, exc: Exception) -> Response:
    return error_response(401, str(exc), {"WWW-Authenticate": 'Bearer realm="enterprise-api"'})


async def on_settings_error(request: Request, exc: Exception) -> Response:
    return error_response(400, str(exc))


async def on_pool_timeout(request: Request, exc: Exception) -> Response:
    return error_response(503, str(exc), {"Retry-After": "1"})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    own_dir: str | None = None
    config_file = settings.config_file
    if config_file is None:  # run without the launcher: a private live file for this process
        own_dir = tempfile.mkdtemp(prefix="enterprise-api-")
        config_file = Path(own_dir) / "config.json"
    if not config_file.exists():
        write_live_file(config_file, {**LIVE_DEFAULTS, "auth_cache_ttl_s": settings.auth_cache_ttl_s})
    pool = create_pool(parse_db_url(settings.db_url), settings.pool_size)
    await pool.open()
    try:
        async with pool.session() as s:
            await s.fetchall(SEEDED_CHECK_SQL)
    except Exception as exc:
        await pool.close()
        raise DatabaseError(f"API_DB is not a seeded enterprise API database: {exc}") from exc
    live = LiveConfig(config_file)
    app.state.pool, app.state.live = pool, live
    app.state.auth = Authenticator(pool, live)
    watcher = asyncio.create_task(live.watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await pool.close()
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def exit_with_launcher() -> None:
    """In a worker process of a multi-worker server: get SIGTERM when the launcher dies."""
    launcher = os.environ.get(LAUNCHER_PID_ENV, "")
    if not launcher.isdigit() or int(launcher) == os.getpid() or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(launcher):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app (uvicorn factory); settings from the environment unless given."""
    settings = settings or read_settings()
    exit_with_launcher()
    parse_db_url(settings.db_url)  # fail early on a malformed URL
    middleware = []
    if settings.gzip:
        middleware.append(Middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES,
                                     compresslevel=settings.gzip_level))
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/admin/config", admin_config, methods=["GET", "PUT"]),
            Route("/admin/stats", admin_stats),
            Route("/api/invoices", invoices, methods=["GET", "POST"]),
            Route("/api/reports/revenue", revenue_report),
            Route("/api/accounts/{account_id:int}", get_account),
            Route("/api/export", export),
        ],
        middleware=middleware,
        exception_handlers={queries.ApiError: on_api_error, AuthError: on_auth_error,
                            SettingsError: on_settings_error, PoolTimeoutError: on_pool_timeout},
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
