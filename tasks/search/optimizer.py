"""Candidate changes: knob candidates, one queue ranked by expected (or calibrated) gain, risk and cost."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Any

from tasks.findings import Candidate, Finding, stronger
from tasks.search.calibration import Calibration
from tasks.spec import BoolKnob, ChoiceKnob, FloatKnob, IntKnob, TargetSpec

RISK_WEIGHT = {"low": 1.0, "medium": 0.6, "high": 0.3}
RESTART_COST = 1.25  # a change that restarts the target costs a restart and a cold cache
KNOB_PRIOR_GAIN = 0.10  # a knob nobody's evidence points at: worth one window, after the evidence
# finding kinds that point at a knob, by words in the knob's name or env var
KNOB_HINTS: dict[str, tuple[str, ...]] = {
    "cpu_saturation": ("worker", "process", "thread"),
    "scaling_limit": ("worker", "pool", "instance"),
    "pool_saturation": ("pool", "connection"),
    "db_time_share": ("cache",),
    "lock_contention": ("sqlite", "journal", "wal", "lock"),
    "uncompressed_response": ("gzip", "compress"),
    "large_payload": ("gzip", "compress"),
    "hot_function": ("cache",),
    "n_plus_one": ("cache",),
    "slow_query": ("cache", "sqlite", "pragma", "mode"),
}
# a hinting finding's measured share of the resource the knob would relieve caps what the knob can win
SHARE_GAIN_KEYS = ("share_of_cpu", "share_of_loop_time")


def _next_values(knob: IntKnob | FloatKnob | BoolKnob | ChoiceKnob, current: Any) -> list[Any]:
    """The values a quick-win pass tries for one knob: one step away from the current value."""
    if isinstance(knob, BoolKnob):
        return [not bool(current)]
    if isinstance(knob, ChoiceKnob):
        return [c for c in knob.choices if c != current]
    if isinstance(knob, IntKnob):
        if knob.high - knob.low <= 4 * knob.step:
            nxt = int(current) + knob.step
            return [nxt] if nxt <= knob.high else []
        mid = knob.low + (knob.high - knob.low) // 2
        return [mid] if mid != current else []
    middle = (knob.low + knob.high) / 2
    return [middle] if middle != current else []


def _knob_words(name: str, knob: Any) -> str:
    env = getattr(knob.apply, "env", "") or ""
    return f"{name} {env} {knob.description}".lower()


def knob_estimate(words: str, findings: Iterable[Finding]) -> tuple[float, str, list[Finding]]:
    """A knob's gain prior, raised by the findings that point at it (by the ``words`` of its name,
    env var and description); (gain, the strongest pointing finding's kind or '', the findings)."""
    hinted = [f for f in findings if any(w in words for w in KNOB_HINTS.get(f.kind, ()))]
    shares = [float(f.estimated_gain.get(k) or 0.0) for f in hinted for k in SHARE_GAIN_KEYS]
    gain = max([KNOB_PRIOR_GAIN + 0.2 * min(len(hinted), 2), *shares])
    strongest = None
    for f in hinted:
        if strongest is None or stronger(f, strongest):
            strongest = f
    return round(min(gain, 0.9), 3), strongest.kind if strongest else "", hinted


def knob_candidates(spec: TargetSpec, config: dict[str, Any], findings: Iterable[Finding] = ()) -> list[Candidate]:
    """One candidate per knob value worth a window, with a gain prior raised by matching findings."""
    findings = list(findings)
    out = []
    for name, knob in spec.knobs.items():
        gain, basis, hinted = knob_estimate(_knob_words(name, knob), findings)
        # going back to the default is what revert does, never an improvement to try
        for value in (v for v in _next_values(knob, config.get(name, knob.default)) if v != knob.default):
            why = f" ({', '.join(sorted({f.kind for f in hinted}))})" if hinted else ""
            out.append(
                Candidate(
                    kind="set_knob",
                    params={"knob": name, "value": value},
                    description=f"set knob {name} = {value!r}{why}",
                    risk="low" if knob.needs_restart is False else "medium",
                    expected_gain=gain,
                    basis=basis,
                )
            )
    return out


def score(candidate: Candidate, calibration: Calibration | None = None) -> float:
    """Expected gain per unit of risk and cost: the queue's priority (higher first).

    With a ``calibration`` fitted on the store's history the expected gain is the calibrated one
    (its kind's estimates scaled by how far they came true); without one, or for a kind with no
    history, it is the candidate's own.
    """
    cost = RESTART_COST if candidate.kind == "set_knob" and candidate.risk == "medium" else 1.0
    gain = candidate.expected_gain if calibration is None else calibration.calibrated_gain(candidate)
    return gain * RISK_WEIGHT.get(candidate.risk, 0.3) / cost


def rank_candidates(candidates: Iterable[Candidate], tried: AbstractSet[str] = frozenset(),
                    calibration: Calibration | None = None) -> list[Candidate]:
    """One queue over all agents' candidates, best first, without repeats or tried changes."""
    unique: dict[str, Candidate] = {}
    for cand in candidates:
        key = cand.key()
        if key in tried:
            continue
        if key not in unique or cand.expected_gain > unique[key].expected_gain:
            unique[key] = cand
    return sorted(unique.values(), key=lambda c: (-score(c, calibration), c.key()))


def candidates_from_findings(findings: Iterable[Finding]) -> list[Candidate]:
    """The findings' candidates, each stamped with the kind of the finding it rests on."""
    return [replace(f.candidate, basis=f.candidate.basis or f.kind) for f in findings if f.candidate is not None]


def covered_by_kept(candidate: Candidate, kept: Iterable[dict[str, Any]]) -> bool:
    """An index whose columns lead an index already kept on the same table.

    The kept index serves every lookup the narrower one would (a B-tree on (a, b) answers
    ``WHERE a = ?``), so trying it would spend windows on a change that cannot help; the
    findings that proposed it were profiled before the wider index existed.
    """
    if candidate.kind != "create_index":
        return False
    table, columns = candidate.params.get("table"), list(candidate.params.get("columns") or [])
    for change in kept:
        if change["kind"] != "create_index" or change["params"].get("table") != table:
            continue
        if columns and list(change["params"].get("columns") or [])[:len(columns)] == columns:
            return True
    return False
