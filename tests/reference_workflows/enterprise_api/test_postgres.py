"""The API on a real throwaway PostgreSQL 15 cluster (psycopg 3 + AsyncConnectionPool)."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from reference_workflows.enterprise_api.launch import free_port, running_app
from reference_workflows.enterprise_api.pgcluster import (
    ClusterError,
    pg_available,
    start_cluster,
    stop_cluster,
)
from reference_workflows.enterprise_api.seed import seed_database

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not pg_available(), reason="PostgreSQL 15 binaries not installed (/usr/lib/postgresql/15/bin/initdb)"),
    pytest.mark.timeout(180),
]


def cluster_processes(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(folder) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="ea-pg-", dir="/tmp"))  # reachable by the postgres user
    dsn = start_cluster(folder, free_port())
    try:
        yield dsn
    finally:
        stop_cluster(folder)
    assert not folder.exists() and not cluster_processes(folder)


def test_app_on_postgres_serves_every_endpoint(pg_dsn: str, auth_headers: dict[str, str], tmp_path: Path):
    import psycopg

    counts = seed_database(pg_dsn, scale=0.02)
    assert counts["invoices"] == 6_000
    with running_app(pg_dsn, {"API_POOL_SIZE": "3"}, log_dir=tmp_path) as app, \
            httpx.Client(base_url=app.base_url, headers=auth_headers, timeout=30) as client:
        config = client.get("/admin/config").json()
        assert config["backend"] == "postgresql" and config["pool_size"] == 3
        assert httpx.get(app.base_url + "/api/invoices", timeout=30).status_code == 401
        page = client.get("/api/invoices?page=2&size=20").json()
        assert len(page["items"]) == 20 and page["items"][0]["created_at"] <= page["items"][-1]["created_at"]
        assert isinstance(page["items"][0]["amount"], float) and "T" in page["items"][0]["created_at"]
        report = client.get("/api/reports/revenue?from=2022-01-01&to=2022-04-01").json()
        account = client.get("/api/accounts/3").json()
        assert account["id"] == 3 and account["risk_rating"] in "ABCD"
        created = client.post("/api/invoices", json={"account_id": 3, "amount": 99.99})
        assert created.status_code == 201, created.text
        assert client.post("/api/invoices", json={"account_id": 424242, "amount": 1}).status_code == 404
        export = client.get("/api/export?limit=100").json()
        assert export[0]["id"] == created.json()["id"] and len(export) == 100
        assert client.get("/admin/stats").json()["pool"]["size"] == 3
    with psycopg.connect(pg_dsn) as con:
        by_status = dict(con.execute(
            "SELECT status, COUNT(*) FROM invoices WHERE issued_on >= '2022-01-01' "
            "AND issued_on < '2022-04-01' GROUP BY status").fetchall())
        audit = con.execute("SELECT client_id, entity_id FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        statements = con.execute("SELECT COUNT(*) FROM pg_stat_statements WHERE query LIKE %s",
                                 ("%ORDER BY created_at, id LIMIT%",)).fetchone()[0]
    assert {k: v["invoices"] for k, v in report["by_status"].items()} == by_status
    assert audit == ("client-03", created.json()["id"])
    assert statements >= 1  # pg_stat_statements is preloaded and sees the app's queries


def test_a_cluster_that_cannot_start_is_cleaned_up():
    folder = Path(tempfile.mkdtemp(prefix="ea-pg-", dir="/tmp"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ClusterError):
            start_cluster(folder, taken.getsockname()[1])
    assert not folder.exists() and not cluster_processes(folder)
