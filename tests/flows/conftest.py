"""One real Prefect server for the flow tests' session (deployments, and `perfagents run`s)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# loaded by path (the tests are not a package) and registered, so test modules share it by name
_spec = importlib.util.spec_from_file_location("perfagents_prefect_support", Path(__file__).with_name("prefect_support.py"))
support = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Started on first use (~15 s), stopped at the session's end. test_e2e_ecommerce does not
    use it: it keeps the embedded path that `make run` takes."""
    with support.prefect_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture
def shared_prefect_api(prefect_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """`perfagents run` subprocesses of this test use the session's server as their Prefect API
    instead of starting an ephemeral one each (a trivial flow: 7.4 s -> 1.4 s, measured)."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.api_url)


@pytest.fixture
def agents_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """`perfagents run` subprocesses of this test profile nothing (PERFAGENTS_AGENTS=none): tests
    of decisions and journaling skip the profiling windows they do not look at (~5 s each)."""
    monkeypatch.setenv("PERFAGENTS_AGENTS", "none")
