"""The target's database URL rendered for a run's workdir, and the SQLite file behind a URL."""

from __future__ import annotations

from pathlib import Path

from tasks.db.url import sqlite_path
from tasks.spec import TargetSpec
from tasks.target import database_url

LOAD = {"endpoints": [{"name": "r", "path": "/"}]}


def test_database_url_and_sqlite_path(tmp_path: Path) -> None:
    assert database_url(TargetSpec(name="nodb", base_url="http://127.0.0.1:1", load=LOAD), tmp_path) is None
    with_db = TargetSpec(name="db", base_url="http://127.0.0.1:1", database={"url": "sqlite:///{workdir}/shop.db"},
                         load=LOAD)
    url = database_url(with_db, tmp_path)
    assert url == f"sqlite:///{tmp_path}/shop.db"
    assert sqlite_path(url) == tmp_path / "shop.db"
    assert sqlite_path("sqlite:///rel.db?mode=ro") == Path("rel.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("sqlite+aiosqlite:////home/p/prefect.db") == Path("/home/p/prefect.db")  # Prefect's own
    assert sqlite_path("sqlitex:///x.db") is None
    assert sqlite_path("postgresql://u@127.0.0.1/db") is None
