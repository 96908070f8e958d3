"""The temporary Prefect server's database: migrated once, by one process at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIGRATE = "from flows.ephemeral import migrate_prefect_database; migrate_prefect_database()"


def fresh_home_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def test_two_runs_starting_at_once_on_a_new_home_both_get_a_migrated_database(tmp_path: Path) -> None:
    # without the lock, 3 of 6 such pairs failed here ("duplicate column name")
    env = fresh_home_env(tmp_path / "home")
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert (tmp_path / "home" / "prefect.db").is_file()
    assert (tmp_path / "home" / ".perfagents-migrated").read_text().endswith("prefect.db")


def migrate(env: dict[str, str], *, forbid: bool = False) -> subprocess.CompletedProcess[str]:
    """migrate_prefect_database in a fresh process (Prefect's settings are read once per process);
    ``forbid``: a migration there fails with 'migrated again'."""
    code = MIGRATE
    if forbid:
        code = ("import prefect.server.database as d\n"
                "def no(): raise SystemExit('migrated again')\n"
                "d.provide_database_interface = no\n" + code)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True, capture_output=True, timeout=180)


def test_a_migrated_home_is_not_migrated_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = fresh_home_env(home)
    assert migrate(env).returncode == 0
    done = migrate(env, forbid=True)
    assert done.returncode == 0, done.stderr[-2000:]  # the marker names this database: nothing to do
    (home / "prefect.db").unlink()  # the database is gone: the marker alone does not count
    again = migrate(env, forbid=True)
    assert again.returncode != 0 and "migrated again" in again.stderr


def test_a_server_with_an_api_url_is_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = migrate({**fresh_home_env(home), "PREFECT_API_URL": "http://127.0.0.1:1/api"}, forbid=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not any((home / name).exists() for name in ("prefect.db", ".perfagents-migrated", ".perfagents-migrate.lock"))
