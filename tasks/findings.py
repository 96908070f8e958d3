"""Findings (what an agent saw) and candidate changes (what could be done about it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["low", "medium", "high"]
Risk = Literal["low", "medium", "high"]
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}


@dataclass(frozen=True)
class Candidate:
    """A reversible change an agent proposes; ``kind`` names an entry of tasks.changes.CHANGE_KINDS.

    ``params`` must be JSON-serialisable: the journal stores it before the change is applied.
    """

    kind: str  # create_index | drop_index | set_knob ...
    params: dict[str, Any]
    description: str
    risk: Risk = "low"
    expected_gain: float = 0.0  # expected relative reduction of the affected metric, 0..1
    endpoint: str | None = None  # the Locust name the change should speed up; None = all

    def key(self) -> str:
        """Identity used to avoid proposing the same change twice."""
        items = ",".join(f"{k}={self.params[k]}" for k in sorted(self.params))
        return f"{self.kind}({items})"


@dataclass
class Finding:
    """What an agent saw, with the evidence that shows it (DESIGN.md, 'Findings and changes')."""

    agent: str
    kind: str
    location: str
    severity: Severity
    evidence: dict[str, Any]
    estimated_gain: dict[str, Any] = field(default_factory=dict)
    endpoint: str | None = None
    candidate: Candidate | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidate"] = asdict(self.candidate) if self.candidate else None
        return out
