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
