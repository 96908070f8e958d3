"""A throwaway PostgreSQL 15 cluster on 127.0.0.1, for tests, measurements and demos.

    dsn = start_cluster("/tmp/pg-demo", 55432)   # postgresql://postgres@127.0.0.1:55432/perfagents
    ...
    stop_cluster("/tmp/pg-demo")                  # fast shutdown, then the folder is removed

The cluster lives in ``<dir>/data`` (initdb, trust auth for the ``postgres`` superuser, C
locale), listens on 127.0.0.1 only with its Unix socket in ``<dir>``, and preloads
``pg_stat_statements`` (the extension is created in the new database). PostgreSQL refuses
to run as root, so when we are root every server command runs as the ``postgres`` user via
``runuser`` and ``<dir>`` is handed to that user: it must be reachable by it (a fresh
folder under /tmp is; pytest's tmp_path, under a 0700 root folder, is not). Every command
has a timeout; a failed start stops whatever started and removes the folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

PG_BIN = Path(os.environ.get("PERFAGENTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
SUPERUSER = "postgres"
DB_NAME = "perfagents"
COMMAND_TIMEOUT_S = 120
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "'top'",
    "logging_collector": "off",
}


class ClusterError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped."""


def pg_available() -> bool:
    """Whether the PostgreSQL server binaries are installed."""
    return (PG_BIN / "initdb").is_file() and (PG_BIN / "pg_ctl").is_file()


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_OS_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], cwd: Path, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(_as_server_user(command), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{Path(command[0]).name} timed out after {timeout_s:g} s") from exc
    except OSError as exc:
        raise ClusterError(f"cannot run {command[0]}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        raise ClusterError(f"{Path(command[0]).name} failed: {lines[-1]}")
    return done.stdout


def _hand_over(directory: Path) -> None:
    """As root: give the folder to the server user and check that user can reach it."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(PG_OS_USER)
    except KeyError as exc:
        raise ClusterError(f"running as root needs the {PG_OS_USER!r} user (apt-get install postgresql)") from exc
    os.chown(directory, user.pw_uid, user.pw_gid)
    os.chmod(directory, 0o700)
    if subprocess.run(["runuser", "-u", PG_OS_USER, "--", "test", "-w", str(directory)],
                      timeout=COMMAND_TIMEOUT_S, check=False).returncode != 0:
        raise ClusterError(f"user {PG_OS_USER} cannot reach {directory}; use a fresh folder under /tmp")


def _create_database(port: int, dbname: str) -> str:
    import psycopg
    from psycopg import sql

    admin = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except psycopg.Error as exc:
        raise ClusterError(f"cannot create database {dbname}: {str(exc).strip().splitlines()[0]}") from exc
    return dsn


def start_cluster(directory: Path | str, port: int, dbname: str = DB_NAME) -> str:
    """initdb + start a cluster in ``directory`` on 127.0.0.1:``port``; its database's DSN."""
    if not pg_available():
        raise ClusterError(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql)")
    base = Path(directory).resolve()
    base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    try:
        _hand_over(base)
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
              "-E", "UTF8", "--locale=C", "--no-sync"], cwd=base)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\n# perfagents throwaway cluster\n")
            conf.write(f"port = {port}\nunix_socket_directories = '{base}'\n")
            conf.writelines(f"{key} = {value}\n" for key, value in SERVER_SETTINGS.items())
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w",
              "-t", str(START_TIMEOUT_S), "start"], cwd=base, timeout_s=START_TIMEOUT_S + 10)
        return _create_database(port, dbname)
    except BaseException as exc:
        reason = _log_reason(base / "server.log")
        stop_cluster(base)
        if isinstance(exc, ClusterError) and reason:
            raise ClusterError(f"{exc} (server log: {reason})") from exc
        raise


def _log_reason(log: Path) -> str:
    """The server log's last FATAL/ERROR/PANIC line, else its last line."""
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    serious = [line for line in lines if any(f"{level}:" in line for level in ("FATAL", "PANIC", "ERROR"))]
    return (serious or lines or [""])[-1].strip()


def stop_cluster(directory: Path | str, *, remove: bool = True) -> None:
    """Stop the cluster in ``directory`` (fast, then immediate) and remove the folder."""
    base = Path(directory).resolve()
    data = base / "data"
    if (data / "postmaster.pid").is_file():
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", str(STOP_TIMEOUT_S), "stop"]
        try:
            _run([*pg_ctl, "-m", "fast"], cwd=Path("/"), timeout_s=STOP_TIMEOUT_S + 10)
        except ClusterError:
            _run([*pg_ctl, "-m", "immediate"], cwd=Path("/"), timeout_s=STOP_TIMEOUT_S + 10)
    if remove:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m reference_workflows.enterprise_api.pgcluster start|stop DIR [--port N]``."""
    import argparse

    parser = argparse.ArgumentParser(description="A throwaway PostgreSQL 15 cluster on loopback.")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory", help="a folder the postgres user can reach, e.g. /tmp/perfagents-pg")
    parser.add_argument("--port", type=int, default=5433)
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(start_cluster(args.directory, args.port))
        else:
            stop_cluster(args.directory)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
