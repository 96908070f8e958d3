"""The real server on SQLite: auth, pagination, report, transactional write, live config, knobs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from reference_workflows.enterprise_api.credentials import bearer_token, derive_secret
from reference_workflows.enterprise_api.launch import REPO_ROOT, RunningApp, running_app, stop_app

pytestmark = pytest.mark.timeout(120)


def get(app: RunningApp, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(app.base_url + path, headers=headers, timeout=30)


def test_api_needs_valid_bearer_credentials(default_app: RunningApp, auth_headers: dict[str, str]):
    assert get(default_app, "/health").json() == {"status": "ok"}
    missing = get(default_app, "/api/invoices")
    assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]
    wrong = {"Authorization": f"Bearer client-03:{derive_secret('client-04')}"}
    assert get(default_app, "/api/invoices", wrong).status_code == 401
    assert get(default_app, "/api/invoices", {"Authorization": "Bearer nope:x"}).status_code == 401
    assert get(default_app, "/api/invoices", {"Authorization": "Basic abc"}).status_code == 401
    assert get(default_app, "/api/invoices", auth_headers).status_code == 200


def test_offset_pagination_is_ordered_by_created_at(default_app: RunningApp, auth_headers: dict[str, str]):
    first = get(default_app, "/api/invoices?page=1&size=50", auth_headers).json()
    second = get(default_app, "/api/invoices?page=2&size=50", auth_headers).json()
    items = first["items"] + second["items"]
    assert len(first["items"]) == 50 and first["next_page"] == 2
    assert [i["created_at"] for i in items] == sorted(i["created_at"] for i in items)
    assert len({i["id"] for i in items}) == 100
    last = first["estimated_total"] // 50 + 2
    beyond = get(default_app, f"/api/invoices?page={last}", auth_headers).json()
    assert beyond["items"] == [] and beyond["next_page"] is None
    assert get(default_app, "/api/invoices?size=500", auth_headers).status_code == 400
    assert get(default_app, "/api/invoices?page=x", auth_headers).status_code == 400


def test_revenue_report_matches_the_database(default_app: RunningApp, auth_headers: dict[str, str],
                                             sqlite_path: Path):
    report = get(default_app, "/api/reports/revenue?from=2022-01-01&to=2022-07-01", auth_headers).json()
    con = sqlite3.connect(sqlite_path)
    try:
        expected = dict(con.execute(
            "SELECT status, COUNT(*) FROM invoices WHERE issued_on >= '2022-01-01' "
            "AND issued_on < '2022-07-01' GROUP BY status").fetchall())
    finally:
        con.close()
    assert {k: v["invoices"] for k, v in report["by_status"].items()} == expected
    amounts = [a["amount"] for a in report["top_accounts"]]
    assert amounts == sorted(amounts, reverse=True) and len(amounts) > 0
    assert get(default_app, "/api/reports/revenue?from=2022-01-01", auth_headers).status_code == 400
    assert get(default_app, "/api/reports/revenue?from=2022-02-01&to=2022-01-01", auth_headers).status_code == 400


def test_create_invoice_is_one_transaction_with_an_audit_row(default_app: RunningApp, auth_headers: dict[str, str],
                                                            sqlite_path: Path):
    def balance_and_audits() -> tuple[float, int]:
        con = sqlite3.connect(sqlite_path)
        try:
            balance = con.execute("SELECT balance FROM accounts WHERE id = 7").fetchone()[0]
            return balance, con.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
        finally:
            con.close()

    balance, audits = balance_and_audits()
    url = default_app.base_url + "/api/invoices"
    created = httpx.post(url, json={"account_id": 7, "amount": 120.5, "currency": "EUR"},
                         headers=auth_headers, timeout=30)
    assert created.status_code == 201, created.text
    invoice = created.json()
    assert invoice["account_id"] == 7 and invoice["status"] == "open" and invoice["amount"] == 120.5
    con = sqlite3.connect(sqlite_path)
    try:
        audit = con.execute("SELECT client_id, action, entity, entity_id FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert audit == ("client-03", "invoice.create", "invoice", invoice["id"])
    after, audits_after = balance_and_audits()
    assert after == pytest.approx(balance + 120.5) and audits_after == audits + 1
    unknown = httpx.post(url, json={"account_id": 999_999, "amount": 5}, headers=auth_headers, timeout=30)
    assert unknown.status_code == 404
    assert httpx.post(url, json={"account_id": 7, "amount": -1}, headers=auth_headers, timeout=30).status_code == 400
    assert httpx.post(url, content=b"{", headers=auth_headers, timeout=30).status_code == 400
    assert balance_and_audits() == (after, audits_after)  # the refused writes left nothing behind


def test_account_and_export(default_app: RunningApp, auth_headers: dict[str, str]):
    account = get(default_app, "/api/accounts/5", auth_headers).json()
    assert account["id"] == 5 and account["risk_rating"] in "ABCD"
    assert get(default_app, "/api/accounts/999999", auth_headers).status_code == 404
    export = get(default_app, "/api/export", {**auth_headers, "Accept-Encoding": "gzip"})
    assert "content-encoding" not in export.headers  # gzip is off by default
    rows = export.json()
    assert len(rows) == 5_000 and [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert len(export.content) > 500_000


def test_auth_cache_ttl_is_live_and_skips_verification(default_app: RunningApp, auth_headers: dict[str, str]):
    config = get(default_app, "/admin/config").json()
    assert config["auth_cache_ttl_s"] == 0 and config["pool_size"] == 2 and config["gzip"] is False

    def verifications_for(n: int) -> int:
        before = get(default_app, "/admin/stats").json()["auth"]["verifications"]
        for _ in range(n):
            assert get(default_app, "/api/accounts/1", auth_headers).status_code == 200
        return get(default_app, "/admin/stats").json()["auth"]["verifications"] - before

    assert verifications_for(3) == 3  # ttl 0: every request re-derives the hash
    put = httpx.put(default_app.base_url + "/admin/config", json={"auth_cache_ttl_s": 60}, timeout=30)
    assert put.status_code == 200 and put.json()["auth_cache_ttl_s"] == 60
    assert verifications_for(3) <= 1  # at most the first one, then cache hits
    other = {"Authorization": bearer_token("client-05")}
    assert get(default_app, "/api/accounts/1", other).status_code == 200
    assert get(default_app, "/api/accounts/1", {"Authorization": f"Bearer client-05:{'0' * 32}"}).status_code == 401
    for bad in ({"auth_cache_ttl_s": -1}, {"pool_size": 8}, {"nope": 1}, []):
        assert httpx.put(default_app.base_url + "/admin/config", json=bad, timeout=30).status_code == 400
    httpx.put(default_app.base_url + "/admin/config", json={"auth_cache_ttl_s": 0}, timeout=30).raise_for_status()
    assert verifications_for(2) == 2


def pids_reporting_ttl(app: RunningApp, ttl: int, timeout_s: float = 5.0) -> set[int]:
    """Worker pids whose /admin/stats shows ``ttl`` (new connections reach either worker)."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (len(seen) < 2 or set(seen.values()) != {ttl}):
        stats = httpx.get(app.base_url + "/admin/stats", timeout=10).json()  # a new connection each time
        seen[stats["pid"]] = stats["auth_cache_ttl_s"]
        time.sleep(0.02)
    return {pid for pid, value in seen.items() if value == ttl}


def test_start_knobs_gzip_pool_workers_and_clean_shutdown(sqlite_url: str, auth_headers: dict[str, str],
                                                          tmp_path: Path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"API_WORKERS": "2", "API_POOL_SIZE": "5", "API_GZIP": "1", "API_GZIP_LEVEL": "1",
           "TMPDIR": str(scratch)}  # the launcher's live config folder goes here
    with running_app(sqlite_url, env, log_dir=tmp_path) as app:
        config = get(app, "/admin/config").json()
        assert (config["workers"], config["pool_size"], config["gzip"], config["gzip_level"]) == (2, 5, True, 1)
        assert get(app, "/admin/stats").json()["pool"]["size"] == 5
        assert list(scratch.glob("enterprise-api-*/config.json"))
        zipped = httpx.get(app.base_url + "/api/export?limit=2000",
                           headers={**auth_headers, "Accept-Encoding": "gzip"}, timeout=30)
        plain = httpx.get(app.base_url + "/api/export?limit=2000",
                          headers={**auth_headers, "Accept-Encoding": "identity"}, timeout=30)
        assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
        assert zipped.num_bytes_downloaded * 3 < plain.num_bytes_downloaded
        assert zipped.json() == plain.json()
        httpx.put(app.base_url + "/admin/config", json={"auth_cache_ttl_s": 17}, timeout=10).raise_for_status()
        workers = pids_reporting_ttl(app, 17)
        assert len(workers) == 2, "both workers follow a live config change"
        code = stop_app(app)
    assert code == 0, app.log_text()[-500:]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in workers)
    assert not list(scratch.iterdir())  # the live config folder is removed


def test_single_worker_server_stops_cleanly_on_sigterm(sqlite_url: str, tmp_path: Path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with running_app(sqlite_url, {"API_WORKERS": "1", "TMPDIR": str(scratch)}, log_dir=tmp_path) as app:
        assert list(scratch.glob("enterprise-api-*/config.json"))
        code = stop_app(app)
    assert code == 0, app.log_text()[-500:]
    assert not list(scratch.iterdir())


def test_server_refuses_a_missing_database_in_one_line(tmp_path: Path):
    env = {**os.environ, "API_DB": f"sqlite:///{tmp_path}/missing.db"}
    done = subprocess.run([sys.executable, "-m", "reference_workflows.enterprise_api.app", "--port", "1"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr
    env["API_POOL_SIZE"] = "zero"
    done = subprocess.run([sys.executable, "-m", "reference_workflows.enterprise_api.app", "--port", "1"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "API_POOL_SIZE must be an integer" in done.stderr
