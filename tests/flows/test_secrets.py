"""Passwords never reach the store, Prefect's database, logs, reports or the --json (DESIGN.md,
principle 6), after a real run that was given three: one in ``--db``, one in ``start.env``'s
``DB_PASSWORD``, one in a URL in ``start.env``.

The run: the mini target attached to nothing but the session's PostgreSQL cluster (trust auth, so
any password connects), the database agent alone profiling it (PERFAGENTS_AGENTS=database), 2.5 s
windows and one iteration; the session's Prefect server records it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest
import yaml

from tasks.db.ident import ident

MINI = Path(__file__).resolve().parent / "mini_target"
PERFAGENTS = Path(sys.executable).parent / "perfagents"
ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"--db": "Pw-db-7f3a9c1e", "DB_PASSWORD": "Pw-env-52b8d4f0", "DATABASE_URL": "Pw-url-c61e0a97"}
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.usefixtures("shared_prefect_api")]


def files_under(folder: Path, since: float = 0.0) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.stat().st_mtime >= since]


def leaks(data: str | bytes, where: str) -> list[str]:
    """'<which password> in <where>' for each password found in ``data`` (raw and URL-encoded alike)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [f"{name} in {where}" for name, pw in PASSWORDS.items() if pw in text]


def store_tables_text(store: Path) -> str:
    """Every row of every table of the store, as text."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        assert {"runs", "windows", "changes", "findings"} <= set(tables)
        return "\n".join(f"{t}: {con.execute('SELECT * FROM ' + ident(t)).fetchall()}" for t in tables)
    finally:
        con.close()


def test_no_password_anywhere_after_a_run(tmp_path: Path, pg_cluster: str, prefect_server, monkeypatch) -> None:
    pg = urlsplit(pg_cluster)
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec["start"]["cwd"] = str(MINI)
    spec["start"]["env"] = {"DB_PASSWORD": PASSWORDS["DB_PASSWORD"],
                            "DATABASE_URL": f"postgresql://postgres:{PASSWORDS['DATABASE_URL']}@{pg.netloc}{pg.path}"}
    spec["database"] = {"url": f"postgresql://postgres@{pg.netloc}{pg.path}"}
    spec["load"].update(profile_s=3)  # secrets, not findings: one short profiling window shows where they could go
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(spec))
    store, out = tmp_path / "state" / "store.duckdb", tmp_path / "out.json"
    db = f"postgresql://postgres:{PASSWORDS['--db']}@{pg.netloc}{pg.path}"
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    started = time.time() - 1
    proc = subprocess.run(
        [str(PERFAGENTS), "run", "target.yaml", "--store", str(store), "--json", str(out), "--db", db,
         "--budget", "iterations=1", "--verbose"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**env, "PERFAGENTS_AGENTS": "database", "PERFAGENTS_MAX_FOREIGN_CORES": "2"})  # secrets, not timings
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["status"] != "failed" and result["baseline"]["total"]["requests"] > 0

    found = leaks(proc.stdout, "stdout") + leaks(proc.stderr, "stderr") + leaks(out.read_text(), "--json")
    found += leaks(store_tables_text(store), "the store's tables")
    # the store, the report, Prefect's local home (.perfagents/prefect), anything else under the run's folder
    for path in [p for p in files_under(tmp_path) if p.name != "target.yaml"]:  # the spec holds them, as given
        found += leaks(path.read_bytes(), str(path.relative_to(tmp_path)))
    # the Prefect server: its SQLite database (and WAL), its log; and the session's Prefect home (result storage)
    server_folder = prefect_server.log.parent
    assert any(p.suffix == ".db" for p in files_under(server_folder)), "no Prefect database found"
    for path in files_under(server_folder) + files_under(Path(os.environ["PREFECT_HOME"]), since=started):
        found += leaks(path.read_bytes(), str(path))
    assert Path(result["report_html"]).is_file()
    assert not found, found
