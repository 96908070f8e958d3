"""A small seeded SQLite database and the real enterprise API server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_workflows.enterprise_api.credentials import bearer_token
from reference_workflows.enterprise_api.launch import RunningApp, running_app
from reference_workflows.enterprise_api.seed import seed_database

TEST_SCALE = 0.02  # 6,000 invoices, 40 accounts: seeds in well under a second
CLIENT = "client-03"


@pytest.fixture(scope="session")
def auth_headers() -> dict[str, str]:
    return {"Authorization": bearer_token(CLIENT)}


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("enterprise-api") / "api.db"
    seed_database(f"sqlite:///{path}", scale=TEST_SCALE)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def sqlite_path(sqlite_url: str) -> Path:
    return Path(sqlite_url.removeprefix("sqlite:///"))


@pytest.fixture(scope="module")
def default_app(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The server with every knob at its default (1 worker, pool 2, no auth cache, no gzip)."""
    logs = tmp_path_factory.mktemp("logs")
    with running_app(sqlite_url, {"API_WORKERS": "1"}, log_dir=logs) as app:
        yield app
