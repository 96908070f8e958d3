from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from reference_workflows.enterprise_api import credentials, seed
from reference_workflows.enterprise_api.launch import REPO_ROOT


def test_rows_are_deterministic_for_a_seed():
    first, again = seed.make_rows(0.005, 7), seed.make_rows(0.005, 7)
    other = seed.make_rows(0.005, 8)
    assert first == again
    assert first["invoices"] != other["invoices"]
    created = [row[3] for row in first["invoices"]]
    assert created == sorted(created) and len(set(created)) == len(created)


def test_seeded_sqlite_has_the_tables_and_none_of_the_planted_indexes(tmp_path: Path):
    counts = seed.seed_database(f"sqlite:///{tmp_path}/api.db", scale=0.01)
    assert counts["invoices"] == 3_000 and counts["accounts"] == 20
    con = sqlite3.connect(tmp_path / "api.db")
    try:
        counts = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in seed.TABLES}
        indexed = {row[2] for name in [r[1] for r in con.execute("PRAGMA index_list(invoices)")]
                   for row in con.execute(f"PRAGMA index_info('{name}')")}
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        encoded = con.execute("SELECT secret_hash FROM api_clients WHERE client_id = 'client-01'").fetchone()[0]
    finally:
        con.close()
    assert counts["invoices"] == 3_000 and counts["accounts"] == 20
    assert counts["api_clients"] == credentials.N_CLIENTS
    assert indexed == {"number"}  # the UNIQUE constraint only: no created_at, no issued_on index
    assert mode == "wal"
    assert credentials.verify_secret(credentials.derive_secret("client-01"), encoded)
    assert not credentials.verify_secret(credentials.derive_secret("client-02"), encoded)


def test_seed_cli_takes_a_relative_sqlite_url_and_refuses_other_schemes(tmp_path: Path):
    ok = subprocess.run([sys.executable, "-m", "reference_workflows.enterprise_api.seed", "--db",
                         "sqlite:///rel/api.db", "--scale", "0.001"], cwd=tmp_path, capture_output=True,
                        text=True, timeout=60, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "rel" / "api.db").is_file()
    assert "invoices=300" in ok.stderr
    bad = subprocess.run([sys.executable, "-m", "reference_workflows.enterprise_api.seed", "--db",
                          "mysql://x/y"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "neither sqlite" in bad.stderr
