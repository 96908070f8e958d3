"""Which agents profile a target: all that apply, or the ones PERFAGENTS_AGENTS names."""

from __future__ import annotations

import pytest

from tasks.agents.registry import AGENTS_ENV, agents_for, selected_agents
from tasks.errors import InputError
from tasks.spec import TargetSpec

SPEC = TargetSpec(name="t", base_url="http://127.0.0.1:{port}",
                  start={"command": ["python", "app.py", "{port}"]},
                  load={"endpoints": [{"name": "a", "path": "/"}]})


def test_unset_or_all_selects_every_agent_that_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AGENTS_ENV, raising=False)
    every = [a.name for a in agents_for(SPEC)]
    assert "application" in every and selected_agents() is None
    monkeypatch.setenv(AGENTS_ENV, "all")
    assert [a.name for a in agents_for(SPEC)] == every


def test_none_and_a_list_narrow_the_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AGENTS_ENV, "none")
    assert agents_for(SPEC) == []
    monkeypatch.setenv(AGENTS_ENV, "application")
    assert [a.name for a in agents_for(SPEC)] == ["application"]


def test_an_unknown_agent_name_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AGENTS_ENV, "application,databse")
    with pytest.raises(InputError, match="unknown agent.*databse"):
        selected_agents()
