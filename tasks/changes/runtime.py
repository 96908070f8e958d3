"""The live state a change acts on: the target, its knob values, its database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.load.generator import LoadGenerator
from tasks.spec import TargetSpec
from tasks.target import TargetHandle


@dataclass
class Runtime:
    spec: TargetSpec
    workdir: Path
    handle: TargetHandle
    config: dict[str, Any]  # knob values in effect
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # capture env for agents
    loadgen: LoadGenerator | None = None  # Locust processes per window (load.processes; auto grows it)

    def __post_init__(self) -> None:
        if self.loadgen is None:
            self.loadgen = LoadGenerator(self.spec.load.processes)

    @property
    def load_generator(self) -> LoadGenerator:
        assert self.loadgen is not None
        return self.loadgen
