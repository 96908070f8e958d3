"""Shared by the PostgreSQL agent tests: throwaway databases on the session cluster, and a small
uvicorn app started with the SQL capture injected (always stopped).

Loaded by the tests with ``load_support()`` (pytest runs with --import-mode=importlib, so test
folders are not packages).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import polars as pl
import psycopg
import pytest
from psycopg import sql

from tasks.agents.database.agent import DatabaseAgent
from tasks.agents.database.sqlcapture import ENV_VAR, INJECT_DIR

HERE = Path(__file__).parent
READY_S = 30
T = TypeVar("T")
STOP_S = 10


def database_dsn(cluster_dsn: str, name: str, *, password: str | None = None) -> str:
    parts = urlsplit(cluster_dsn)
    netloc = parts.netloc if password is None else parts.netloc.replace("@", f":{quote(password, safe='')}@", 1)
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))


def create_database(cluster_dsn: str, name: str) -> str:
    """A fresh database (dropped first if it exists) with pg_stat_statements; its DSN."""
    with psycopg.connect(database_dsn(cluster_dsn, "postgres"), autocommit=True) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = database_dsn(cluster_dsn, name)
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("CREATE EXTENSION pg_stat_statements")
    return dsn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_captured(app: str, env: dict[str, str], log_dir: Path, log: Path) -> Iterator[str]:
    """``uvicorn <app>`` from this folder with the capture writing to ``log_dir``; yields its base URL."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", ENV_VAR)}
    full_env.update(PYTHONPATH=str(INJECT_DIR), **{ENV_VAR: str(log_dir)}, **env)
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--app-dir", str(HERE), "--no-access-log"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_S
        while True:
            assert proc.poll() is None, f"app exited: {log.read_text()[-2000:]}"
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"app not ready: {log.read_text()[-2000:]}"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_S)


def profile_during(ctx: Any, drive: Callable[[], T], *, join_s: float = 90.0) -> tuple[DatabaseAgent, dict[str, Any], T]:
    """Run the database agent's profile in a thread, call ``drive()`` once its first snapshot is
    taken, then stop it: (agent, observed, what ``drive`` returned). Its failure is re-raised here."""
    from tasks.agents.database.postgres import agent as database_pg

    agent, observed, failure = DatabaseAgent(), {}, []
    started = threading.Event()
    real_snapshot = database_pg.take_snapshot

    def spy(con):  # the real snapshot, and a signal that the window has started
        snap = real_snapshot(con)
        started.set()
        return snap

    def profile() -> None:
        try:
            observed.update(agent.profile(ctx))
        except BaseException as exc:  # re-raised below
            failure.append(exc)
            started.set()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(database_pg, "take_snapshot", spy)
        thread = threading.Thread(target=profile, daemon=True)
        thread.start()
        try:
            assert started.wait(30), "the agent took no snapshot"
            result = drive()
        finally:
            ctx.stop.set()
            thread.join(join_s)
    assert not thread.is_alive(), "profile did not return after ctx.stop"
    if failure:
        raise failure[0]
    return agent, observed, result


def profile_while_driving(
    ctx: Any, app: str, env: dict[str, str], log_dir: Path, log: Path, drive: Callable[[str], pl.DataFrame],
    *, join_s: float = 90.0,
) -> tuple[DatabaseAgent, dict[str, Any], pl.DataFrame]:
    """Start ``app`` with the capture and profile while ``drive(base_url)`` makes the requests
    (``profile_during``): (agent, observed, the drive's samples)."""
    with serve_captured(app, env, log_dir, log) as base:
        return profile_during(ctx, lambda: drive(base), join_s=join_s)
