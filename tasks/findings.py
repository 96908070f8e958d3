"""Findings (what an agent saw) and candidate changes (what could be done about it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["low", "medium", "high"]
Risk = Literal["low", "medium", "high"]
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
# estimated_gain keys that are a share (0..1) of a resource the finding's cause holds
IMPACT_KEYS = ("share_of_cpu", "db_time_share", "share_of_loop_time", "share_of_request_time", "all_busy_share")


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
    # the finding kind the expected gain rests on ('' for a knob no finding points at): with
    # ``kind`` it names the history its estimate is calibrated on (tasks/search/calibration.py)
    basis: str = ""

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


def impact(finding: Finding) -> float:
    """The largest resource share the finding's estimated gain names (0 when it names none)."""
    values = [finding.estimated_gain.get(k) for k in IMPACT_KEYS]
    return max([float(v) for v in values if isinstance(v, int | float)], default=0.0)


def stronger(a: Finding, b: Finding) -> bool:
    """Whether ``a`` is stronger evidence than ``b``: more severe, or as severe with more impact."""
    return (SEVERITY_RANK[a.severity], impact(a)) > (SEVERITY_RANK[b.severity], impact(b))
