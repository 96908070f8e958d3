"""Fixtures of the advisor's tests: the local replay server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("advisor_replay_server", Path(__file__).with_name("replay_server.py"))
assert _spec and _spec.loader
replay_server = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = replay_server
_spec.loader.exec_module(replay_server)
ReplayServer = replay_server.ReplayServer


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


SHOP = Path(__file__).resolve().parents[3] / "reference_workflows" / "ecommerce"
SHOP_FILES = ("catalog.py", "db.py", "search.py", "orders.py")


def run_git(cwd: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def git():
    """``git(cwd, *args)``: run git with a throwaway identity."""
    return run_git


@pytest.fixture
def recorded() -> dict:
    """The shop's recorded findings by short name: n_plus_one, checkout, edit_distance, score_product."""
    import json

    from tasks.findings import Finding

    doc = json.loads((SHOP / "recorded_findings.json").read_text())
    found = [Finding(**f) for f in doc["findings"]]
    return dict(zip(("n_plus_one", "checkout", "edit_distance", "score_product"), found, strict=True))


@pytest.fixture
def shop_source(tmp_path: Path) -> Path:
    """A git work tree holding a copy of the shop's modules (source_dir; paths like catalog.py)."""
    folder = tmp_path / "shop"
    folder.mkdir()
    for name in SHOP_FILES:
        (folder / name).write_text((SHOP / name).read_text())
    run_git(folder, "init", "-q")
    run_git(folder, "add", ".")
    run_git(folder, "commit", "-qm", "shop")
    return folder
