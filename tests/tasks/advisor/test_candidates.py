"""Which code-level finding the advisor asks about first."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tasks.advisor import candidates
from tasks.advisor.advise import Advice
from tasks.findings import Finding


def finding(kind: str, location: str, severity: str, **gain: float) -> Finding:
    return Finding(agent="application", kind=kind, location=location, severity=severity, evidence={},
                   estimated_gain=dict(gain))


def test_the_most_severe_finding_is_asked_first_even_without_a_named_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """An N+1 names no share of time; a low hot function names 6%: the N+1 (medium) goes first."""
    asked: list[str] = []
    monkeypatch.setattr(candidates, "build_context", lambda group, *_: SimpleNamespace(tokens=10, group=group))
    monkeypatch.setattr(candidates, "advise",
                        lambda ctx, *_a, **_k: asked.append(ctx.group[0].location) or Advice("no_patch"))
    adv = SimpleNamespace(done=set(), attempts={}, notes=[], exhausted=None, pending={}, source_dir=None,
                          llm=SimpleNamespace(models=[1, 2], max_context_tokens=1000), client=None, spend=None,
                          cache=None)
    found = [finding("hot_function", "shop:db", "low", share_of_cpu=0.056),
             finding("n_plus_one", "shop:order_lines", "medium")]
    assert candidates.next_code_candidate(adv, found, None) is None  # both answered without a patch
    assert asked == ["shop:order_lines", "shop:db"]
