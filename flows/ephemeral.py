"""Prefect's temporary API server (a run without PREFECT_API_URL): migrated once, dies with the run.

Prefect starts it as a plain child process (``SubprocessASGIServer``): a run killed by SIGKILL or
the OOM killer left it serving on its port forever (benchmarks/kill_campaign.py found one per
early kill). Its ``subprocess`` module is given a Popen that sets ``PR_SET_PDEATHSIG`` from the
toolkit's long-lived spawner thread (tasks/target/process.py), as for targets and Locust.

Each temporary server migrates its database as it starts. Two runs started at once on a new
``PREFECT_HOME`` migrated one SQLite file together, and one server failed ("duplicate column
name"; 3 of 6 tries of two concurrent migrations here). So the database is migrated before the
flow, one process at a time under a lock file, and a marker beside it spares later runs the check.
"""

from __future__ import annotations

import asyncio
import fcntl
import subprocess
import time
import types
from pathlib import Path
from typing import IO

from tasks.db.url import sqlite_path
from tasks.errors import PerfagentsError

MIGRATE_WAIT_S = 180.0  # another run's migration takes ~6 s here; Prefect's own start bound is 180 s
LOCK_POLL_S = 0.2


def ephemeral_server_dies_with_us() -> None:
    """Install the Popen shim in Prefect's server module (idempotent; a no-op if it moved)."""
    from prefect.server.api import server

    from tasks.target.process import popen_dying_with_us

    if getattr(server.subprocess, "perfagents_shim", False) or not hasattr(server, "SubprocessASGIServer"):
        return
    shim = types.SimpleNamespace(**{k: getattr(subprocess, k) for k in dir(subprocess) if not k.startswith("__")})
    shim.Popen = popen_dying_with_us
    shim.perfagents_shim = True
    server.subprocess = shim  # type: ignore[assignment]


def migrate_prefect_database() -> None:
    """Migrate the temporary server's database once per database, one process at a time."""
    import prefect
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_API_URL, PREFECT_HOME

    if PREFECT_API_URL.value():
        return  # a real server: it owns its database
    url = str(PREFECT_API_DATABASE_CONNECTION_URL.value())
    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".perfagents-migrated"
    stamp = f"{prefect.__version__} {url}"
    if _migrated(marker, stamp, url):
        return
    with (home / ".perfagents-migrate.lock").open("w") as lock:
        _lock(lock, home)
        if _migrated(marker, stamp, url):
            return  # another run migrated it while this one waited
        from prefect.server.database import provide_database_interface

        asyncio.run(provide_database_interface().create_db())
        marker.write_text(stamp)


def _migrated(marker: Path, stamp: str, url: str) -> bool:
    """The marker names this Prefect and this database, and (SQLite) the database file exists."""
    if not marker.is_file() or marker.read_text() != stamp:
        return False
    sqlite_file = sqlite_path(url)
    return sqlite_file is None or sqlite_file.is_file()


def _lock(lock: IO[str], home: Path) -> None:
    deadline = time.monotonic() + MIGRATE_WAIT_S
    while True:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise PerfagentsError(f"another run has been migrating Prefect's database in {home} "
                                      f"for over {MIGRATE_WAIT_S:.0f} s") from None
            time.sleep(LOCK_POLL_S)
