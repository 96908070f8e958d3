"""The registered agents, and what starting a target needs for them."""

from __future__ import annotations

from pathlib import Path

from tasks.agents.base import AGENTS, Agent
from tasks.spec import TargetSpec

_loaded = False


def load_agents() -> None:
    """Register the built-in agents once (explicitly, no import-time magic)."""
    global _loaded
    if _loaded:
        return
    from tasks.agents.application import ApplicationAgent
    from tasks.agents.database import DatabaseAgent
    from tasks.agents.frontend import FrontendAgent
    from tasks.agents.tracing import TracingAgent

    for agent in (DatabaseAgent(), ApplicationAgent(), FrontendAgent(), TracingAgent()):
        AGENTS.register(agent)
    _loaded = True


def agents_for(spec: TargetSpec, only: list[str] | None = None) -> list[Agent]:
    load_agents()
    agents = AGENTS.for_target(spec)
    return [a for a in agents if only is None or a.name in only]


def capture_env_for(agents: list[Agent], workdir: Path) -> dict[str, str]:
    """Env vars the target must start with so the agents can see inside it."""
    env: dict[str, str] = {}
    for agent in agents:
        hook = getattr(agent, "target_env", None)
        if hook is not None:
            env.update(hook(workdir))
    return env
