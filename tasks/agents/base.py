"""The agent plug-in contract and its registry.

An agent profiles one layer while the load window runs (``profile``), then turns what it
saw into findings (``findings``). Agents never raise into the run: the runner records an
agent that fails or overruns as a failed agent and carries on (DESIGN.md principle 3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import polars as pl

from tasks.findings import Finding
from tasks.spec import TargetSpec


@dataclass
class AgentContext:
    """What an agent may look at during one window."""

    spec: TargetSpec
    base_url: str
    workdir: Path
    window_s: float  # planned length of the load window, warm-up included
    database_url: str | None = None  # rendered: no placeholders left
    pids: Callable[[], list[int]] = lambda: []  # the target's process tree, now
    stop: threading.Event = field(default_factory=threading.Event)  # set when the window ends
    config: dict[str, Any] = field(default_factory=dict)  # the knob values in effect
    # the other agents' observations of this window, set before ``findings`` (an agent may use
    # another's: the database agent reads SQL from the application agent's profile when nothing
    # was captured)
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    name: str
    layer: str  # database | application | frontend

    def applies_to(self, spec: TargetSpec) -> bool:
        """Whether this agent has anything to profile on this target."""

    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        """Collect raw observations while the window runs; return by ``ctx.stop`` + a few seconds."""

    def findings(self, ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> list[Finding]:
        """Turn observations (and the window's request samples) into findings."""


class AgentRegistry:
    """An explicit name -> agent map that refuses duplicate names."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}

    def register(self, agent: Agent) -> Agent:
        if agent.name in self._agents:
            raise ValueError(f"an agent named {agent.name!r} is already registered")
        self._agents[agent.name] = agent
        return agent

    def get(self, name: str) -> Agent:
        return self._agents[name]

    def names(self) -> list[str]:
        return list(self._agents)

    def for_target(self, spec: TargetSpec) -> list[Agent]:
        return [agent for agent in self._agents.values() if agent.applies_to(spec)]


AGENTS = AgentRegistry()
