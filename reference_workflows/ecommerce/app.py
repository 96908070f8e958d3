"""The shop's ASGI app and its production server.

    SHOP_DB=shop.db python -m reference_workflows.ecommerce.app --port 8000

Served by uvicorn with uvloop and httptools given explicitly (the asyncio loop adds ~43 ms
per keep-alive request with several workers, see DESIGN.md), no access log, bound to
127.0.0.1. Environment (knobs):

    SHOP_DB            SQLite file (required; create it with the seed module)
    SHOP_WORKERS       worker processes (default 1)
    SHOP_GZIP          1/0: gzip responses (default 0)
    SHOP_CACHE_TTL_S   initial response-cache TTL in seconds (default: the stored value, else 0)
    SHOP_SQLITE_MODE   default | tuned (see db.py)
    SHOP_FIX_N_PLUS_ONE  1: fetch reviewers with a JOIN. A measurement switch for
                       BOTTLENECKS.md, deliberately not a knob: code fixes are reported, not applied.

SIGTERM stops the server gracefully and exits 0; with several workers the parent stops
them first, and each worker also asks the kernel to SIGTERM it if the parent dies.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

from reference_workflows.ecommerce.db import Database, DatabaseError, check_mode, prepare_database
from reference_workflows.ecommerce.live_config import (
    ConfigError,
    LiveConfig,
    config_path,
    init_config,
)
from reference_workflows.ecommerce.orders import ShopError
from reference_workflows.ecommerce.response_cache import ResponseCache
from reference_workflows.ecommerce.routes import build_routes, shop_error

STATIC_DIR = Path(__file__).resolve().parent / "static"
APP_FACTORY = "reference_workflows.ecommerce.app:create_app"
HOST = "127.0.0.1"
MAX_WORKERS = 16
GZIP_MIN_BYTES = 1000
GZIP_LEVEL = 6
GRACEFUL_SHUTDOWN_S = 5
SUPERVISOR_PID_ENV = "SHOP_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """An environment variable the shop cannot use."""


@dataclass(frozen=True)
class Settings:
    db: Path
    workers: int = 1
    gzip: bool = False
    cache_ttl_s: int | None = None
    sqlite_mode: str = "default"
    fix_n_plus_one: bool = False


def parse_int(env: dict[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name} must be in {low}..{high}, got {value}")
    return value


def parse_bool(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "0").strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def read_settings(env: dict[str, str] | None = None) -> Settings:
    """The shop's settings from the environment; every problem is one SettingsError line."""
    env = dict(os.environ if env is None else env)
    db = env.get("SHOP_DB", "").strip()
    if not db:
        raise SettingsError("SHOP_DB is not set (path of the SQLite file made by the seed module)")
    try:
        mode = check_mode(env.get("SHOP_SQLITE_MODE", "default").strip() or "default")
    except DatabaseError as exc:
        raise SettingsError(str(exc)) from exc
    workers = parse_int(env, "SHOP_WORKERS", 1, 1, MAX_WORKERS)
    assert workers is not None
    return Settings(db=Path(db).resolve(), workers=workers, gzip=parse_bool(env, "SHOP_GZIP"),
                    cache_ttl_s=parse_int(env, "SHOP_CACHE_TTL_S", None, 0, 86_400),
                    sqlite_mode=mode, fix_n_plus_one=parse_bool(env, "SHOP_FIX_N_PLUS_ONE"))


def die_with_supervisor() -> None:
    """In a worker process: have the kernel SIGTERM us when the supervisor dies."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if not supervisor or int(supervisor) == os.getpid() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(supervisor):  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app for one worker process."""
    settings = settings or read_settings()
    die_with_supervisor()
    middleware = [Middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)] if settings.gzip else []
    app = Starlette(routes=build_routes(str(STATIC_DIR)), middleware=middleware,
                    exception_handlers={ShopError: shop_error})
    app.state.settings = settings
    app.state.db = Database(settings.db, settings.sqlite_mode)
    app.state.live_config = LiveConfig(config_path(settings.db))
    app.state.response_cache = ResponseCache()
    return app


def exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(port: int, settings: Settings) -> None:
    """Prepare the database and config, then run uvicorn until SIGTERM/SIGINT."""
    prepare_database(settings.db, settings.sqlite_mode)
    init_config(config_path(settings.db), settings.cache_ttl_s)
    if settings.workers > 1:
        os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())
    else:
        os.environ.pop(SUPERVISOR_PID_ENV, None)
    uvicorn.run(APP_FACTORY, factory=True, host=HOST, port=port, workers=settings.workers,
                loop="uvloop", http="httptools", log_level="warning", access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the e-commerce reference shop.")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_cleanly)
    try:
        serve(args.port, read_settings())
    except (SettingsError, DatabaseError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
