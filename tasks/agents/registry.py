"""The registered agents, and what starting a target needs for them."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.agents.base import AGENTS, Agent
from tasks.errors import InputError
from tasks.spec import TargetSpec

# which agents profile: unset or "all" = every agent that applies to the target, "none" = no
# profiling windows at all (a run that only decides knobs), or a comma list of agent names
AGENTS_ENV = "PERFAGENTS_AGENTS"
_loaded = False


def load_agents() -> None:
    """Register the built-in agents once (explicitly, no import-time magic)."""
    global _loaded
    if _loaded:
        return
    from tasks.agents.application.agent import ApplicationAgent
    from tasks.agents.database.agent import DatabaseAgent
    from tasks.agents.frontend.agent import FrontendAgent
    from tasks.agents.tracing import TracingAgent

    for agent in (DatabaseAgent(), ApplicationAgent(), FrontendAgent(), TracingAgent()):
        AGENTS.register(agent)
    _loaded = True


def selected_agents() -> list[str] | None:
    """The agent names ``PERFAGENTS_AGENTS`` selects (None: all); an unknown name is an InputError."""
    raw = os.environ.get(AGENTS_ENV, "").strip()
    if raw in ("", "all"):
        return None
    if raw == "none":
        return []
    load_agents()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(AGENTS.names()))
    if unknown:
        raise InputError(f"{AGENTS_ENV}: unknown agent(s) {', '.join(unknown)} "
                         f"(known: {', '.join(AGENTS.names())}, or all, none)")
    return names


def agents_for(spec: TargetSpec, only: list[str] | None = None) -> list[Agent]:
    """The agents that profile this target: those that apply to it, narrowed by ``only`` or,
    without it, by ``PERFAGENTS_AGENTS``."""
    load_agents()
    only = selected_agents() if only is None else only
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
