"""The e-commerce reference target, for real: a seeded SQLite file, the server as a subprocess."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from reference_workflows.ecommerce.seed import seed_database
from tasks.spec import load_spec

REPO = Path(__file__).resolve().parents[3]
SCALE = 0.05
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shop_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("shop") / "shop.db"
    seed_database(db, scale=SCALE)
    return db


def is_worker(proc: psutil.Process) -> bool:
    """A uvicorn worker (multiprocessing's resource tracker is the other child)."""
    return any("spawn_main" in part for part in proc.cmdline())


class Shop:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def tree(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        try:
            return [p for p in self.tree()[1:] if is_worker(p)]
        except psutil.NoSuchProcess:
            return []

    def wait_workers(self, n: int) -> list[psutil.Process]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(self.workers()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.workers()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        raise


@contextmanager
def running_shop(db: Path, **env: str) -> Iterator[Shop]:
    port = free_port()
    full_env = {**os.environ, "SHOP_DB": str(db), **env}
    proc = subprocess.Popen([sys.executable, "-m", "reference_workflows.ecommerce.app", "--port", str(port)],
                            cwd=REPO, env=full_env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shop = Shop(proc, port)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"shop exited early: {proc.stderr.read().decode() if proc.stderr else ''}"
            try:
                if shop.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "shop did not become ready"
            time.sleep(0.1)
        yield shop
    finally:
        shop.client.close()
        if proc.poll() is None:
            try:
                stop(proc)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in the session
        except ProcessLookupError:
            pass


def assert_all_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
    assert not alive, f"processes outlived the server: {[p.pid for p in alive]}"


def test_seed_is_deterministic_and_plants_the_missing_index(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    counts = seed_database(a, scale=SCALE)
    seed_database(b, scale=SCALE)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert counts["products"] == 1000 and counts["orders"] == 25_000 and counts["customers"] == 1000
    assert counts["order_items"] > counts["orders"] and counts["reviews"] > 9000
    con = sqlite3.connect(a)
    plan = " ".join(r[3] for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM orders WHERE customer_id = 1"))
    review_plan = " ".join(r[3] for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM reviews WHERE product_id = 1"))
    assert con.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
    con.close()
    assert plan.startswith("SCAN orders")
    assert "INDEX sqlite_autoindex_reviews" in review_plan


def test_spec_validates() -> None:
    spec = load_spec(REPO / "reference_workflows/ecommerce/target.yaml")
    assert spec.name == "ecommerce"
    assert set(spec.knobs) == {"workers", "gzip", "cache_ttl_s", "sqlite_mode"}
    assert (spec.spec_dir / spec.start.cwd).resolve() == REPO


def test_endpoints_serve_the_shop(shop_db: Path) -> None:
    with running_shop(shop_db) as shop:
        c = shop.client
        health = c.get("/health").json()
        assert health["status"] == "ok" and health["products"] == 1000 and health["customers"] == 1000
        home = c.get("/")
        assert home.status_code == 200 and '<script src="/static/app.js">' in home.text
        assert "/static/app.css" in c.get("/products/1").text
        assert c.get("/products/99999").status_code == 404

        page = c.get("/api/products", params={"page": 2, "per_page": 10}).json()
        assert page["total"] == 1000 and [p["id"] for p in page["items"]] == list(range(11, 21))
        in_category = c.get("/api/products", params={"category": 3}).json()
        assert in_category["items"] and all(p["category_id"] == 3 for p in in_category["items"])
        assert c.get("/api/products", params={"page": "x"}).status_code == 400

        found = c.get("/api/search", params={"q": "lamp"}).json()["items"]
        assert found and all("lamp" in p["name"].lower() for p in found)
        assert [p["score"] for p in found] == sorted((p["score"] for p in found), reverse=True)

        product = max((c.get(f"/api/products/{i}").json() for i in range(1, 30)), key=lambda p: p["review_count"])
        assert product["reviews"] and all(r["reviewer"] for r in product["reviews"])
        assert c.get("/api/products/99999").status_code == 404

        assert c.post("/api/checkout", json={"customer_id": 7}).status_code in (201, 409)  # a seeded cart?
        before = c.get("/api/customers/7/orders").json()
        assert c.post("/api/checkout", json={"customer_id": 7}).status_code == 409  # cart now empty
        cart = c.post("/api/cart/items", json={"customer_id": 7, "product_id": 5, "quantity": 2})
        assert cart.status_code == 201 and cart.json()["units"] == 2
        order = c.post("/api/checkout", json={"customer_id": 7})
        assert order.status_code == 201 and order.json()["lines"] == 1
        after = c.get("/api/customers/7/orders").json()
        assert after["order_count"] == before["order_count"] + 1
        assert after["orders"][0]["id"] == order.json()["order_id"]
        assert after["orders"][0]["items"][0]["product_id"] == 5
        assert c.post("/api/cart/items", json={"customer_id": 7, "product_id": 5, "quantity": 0}).status_code == 400
        assert c.post("/api/cart/items", content=b"{nope").status_code == 400
        assert c.get("/api/customers/99999/orders").status_code == 404

        static = c.get("/static/app.js", headers={"Accept-Encoding": "gzip"})
        assert static.status_code == 200 and len(static.content) > 100_000
        assert "cache-control" not in static.headers and "content-encoding" not in static.headers
        assert "content-encoding" not in c.get("/", headers={"Accept-Encoding": "gzip"}).headers


def test_cache_ttl_is_live_and_only_for_catalog_reads(shop_db: Path) -> None:
    with running_shop(shop_db) as shop:
        c = shop.client
        assert c.get("/admin/config").json() == {"cache_ttl_s": 0}
        assert "x-cache" not in c.get("/api/products").headers
        assert c.put("/admin/config", json={"cache_ttl_s": 30}).json() == {"cache_ttl_s": 30}
        assert c.get("/admin/config").json() == {"cache_ttl_s": 30}
        first, second = c.get("/api/products?page=3"), c.get("/api/products?page=3")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert first.content == second.content
        assert c.get("/api/products?page=4").headers["x-cache"] == "MISS"  # keyed by full URL
        for path in ("/", "/products/2", "/api/products/2", "/api/search?q=oak"):
            c.get(path)
            assert c.get(path).headers["x-cache"] == "HIT", path
        assert "x-cache" not in c.get("/api/customers/3/orders").headers
        assert c.put("/admin/config", json={"cache_ttl_s": 0}).status_code == 200
        assert "x-cache" not in c.get("/api/products?page=3").headers
        assert c.put("/admin/config", json={"cache_ttl_s": -1}).status_code == 400
        assert c.put("/admin/config", json={"ttl": 5}).status_code == 400
        assert c.get("/admin/config").json() == {"cache_ttl_s": 0}


def test_gzip_knob_compresses_pages_and_assets(shop_db: Path) -> None:
    with running_shop(shop_db, SHOP_GZIP="1") as shop:
        for path in ("/", "/api/products", "/static/app.js", "/static/app.css"):
            response = shop.client.get(path, headers={"Accept-Encoding": "gzip"})
            assert response.headers.get("content-encoding") == "gzip", path
            assert response.num_bytes_downloaded < len(response.content) / 2, path


def test_two_workers_share_the_config_and_stop_on_sigterm(shop_db: Path) -> None:
    with running_shop(shop_db, SHOP_WORKERS="2", SHOP_SQLITE_MODE="tuned") as shop:
        workers = shop.wait_workers(2)
        tree = shop.tree()
        assert len(workers) == 2, [p.cmdline() for p in tree]
        pids = {w.pid for w in workers}
        with closing(sqlite3.connect(shop_db)) as con:
            assert con.execute("PRAGMA journal_mode").fetchall() == [("wal",)]

        assert shop.client.put("/admin/config", json={"cache_ttl_s": 45}).status_code == 200
        seen: dict[int, set[int]] = {}
        for _ in range(60):  # a new connection each time, so both workers answer
            with httpx.Client(base_url=shop.url, timeout=10) as fresh:
                pid = fresh.get("/health").json()["pid"]
                seen.setdefault(pid, set()).add(fresh.get("/admin/config").json()["cache_ttl_s"])
        assert set(seen) <= pids
        assert all(values == {45} for values in seen.values()), seen
        time.sleep(0.3)  # the request path checks the file every 0.1 s
        for _ in range(10):
            with httpx.Client(base_url=shop.url, timeout=10) as fresh:
                assert fresh.get("/api/products?page=7").headers.get("x-cache") in ("HIT", "MISS")

        assert stop(shop.proc) == 0
        assert_all_gone(tree)


def test_workers_die_with_a_killed_supervisor(shop_db: Path) -> None:
    with running_shop(shop_db, SHOP_WORKERS="2") as shop:
        assert len(shop.wait_workers(2)) == 2
        tree = shop.tree()
        stop(shop.proc, signal.SIGKILL)
        assert_all_gone(tree)


def test_single_worker_exits_cleanly_on_sigterm(shop_db: Path) -> None:
    with running_shop(shop_db) as shop:
        tree = shop.tree()
        assert shop.client.get("/health").status_code == 200
        assert stop(shop.proc) == 0
        assert_all_gone(tree)


def test_bad_settings_fail_in_one_line(tmp_path: Path) -> None:
    for env, needle in (({"SHOP_DB": str(tmp_path / "none.db")}, "does not exist"),
                        ({"SHOP_DB": str(tmp_path / "x.db"), "SHOP_WORKERS": "zero"}, "SHOP_WORKERS"),
                        ({"SHOP_DB": str(tmp_path / "x.db"), "SHOP_SQLITE_MODE": "fast"}, "SHOP_SQLITE_MODE")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")} | env
        result = subprocess.run([sys.executable, "-m", "reference_workflows.ecommerce.app", "--port", "1"],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
