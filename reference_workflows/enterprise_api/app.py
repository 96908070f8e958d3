"""The enterprise API's production server.

    API_DB=sqlite:///api.db python -m reference_workflows.enterprise_api.app --port 8000

uvicorn with ``API_WORKERS`` worker processes, ``--loop uvloop --http httptools`` set
explicitly (uvicorn's multi-worker mode on the plain asyncio loop adds ~43 ms to every
keep-alive request here; see DESIGN.md), no access log. The launcher writes the initial
live config (``API_AUTH_CACHE_TTL_S``) into a private temp folder, passes its path to every
worker as ``API_CONFIG_FILE`` and removes the folder when the server stops (SIGTERM or
Ctrl-C: graceful shutdown, then exit 0). A bad setting or a missing SQLite file is one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import uvicorn

from reference_workflows.enterprise_api.api import LAUNCHER_PID_ENV
from reference_workflows.enterprise_api.database import DatabaseError, parse_db_url
from reference_workflows.enterprise_api.settings import (
    LIVE_DEFAULTS,
    Settings,
    SettingsError,
    read_settings,
    write_live_file,
)

APP_FACTORY = "reference_workflows.enterprise_api.api:create_app"
HOST = "127.0.0.1"
LOG_LEVEL = "warning"
GRACEFUL_SHUTDOWN_S = 5


def check_settings() -> Settings:
    settings = read_settings()
    db = parse_db_url(settings.db_url)
    if db.path is not None and not db.path.is_file():
        raise DatabaseError(f"SQLite database {db.path} does not exist (run the seed first)")
    return settings


def exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(port: int, settings: Settings, host: str = HOST) -> None:
    """Run uvicorn until it is stopped; the live config folder is removed afterwards.

    uvicorn re-raises SIGTERM/SIGINT once its graceful shutdown is done; with the default
    handlers that would kill this process before the ``finally`` below, so they exit 0.
    """
    signal.signal(signal.SIGTERM, exit_zero)
    signal.signal(signal.SIGINT, exit_zero)
    config_dir = Path(tempfile.mkdtemp(prefix="enterprise-api-"))
    config_file = config_dir / "config.json"
    write_live_file(config_file, {**LIVE_DEFAULTS, "auth_cache_ttl_s": settings.auth_cache_ttl_s})
    os.environ["API_CONFIG_FILE"] = str(config_file)
    if settings.workers > 1:
        os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
    try:
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=settings.workers,
                    loop="uvloop", http="httptools", lifespan="on", log_level=LOG_LEVEL,
                    access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the enterprise API reference target.")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    try:
        settings = check_settings()
    except (SettingsError, DatabaseError) as exc:
        print(f"enterprise-api: {exc}", file=sys.stderr)
        return 2
    serve(args.port, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
