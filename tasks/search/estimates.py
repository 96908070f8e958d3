"""What a tried change was estimated to gain, and the history of estimates against measurements.

``estimate_of`` is written to the store (``change_estimates``) when a change is journaled; the
decision's measurement completes the row when the change is settled. ``history`` reads every
settled estimate back, with the changes journaled before the table existed rebuilt from their
run's findings (the candidate a finding proposed carries its expected gain; a knob's gain is
recomputed from the findings that pointed at it, as ``knob_candidates`` computes it), so a store
that predates it is learned from as well. ``fit_history`` fits the calibration ranking uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from tasks.findings import Candidate, Finding, impact, stronger
from tasks.search.calibration import (
    Calibration,
    Observation,
    fit_calibration,
    learning_kind,
    observation,
)
from tasks.search.optimizer import knob_estimate

WHATIF_KINDS = ("missing_index",)  # findings whose estimated_gain.ratio is a what-if's


def source_finding(candidate: Candidate, findings: Iterable[Finding]) -> Finding | None:
    """The finding the candidate's estimate rests on: the strongest that proposed it, else the
    strongest of its basis kind (at its location, for a patch); None for an evidence-free knob."""
    proposers, based = [], []
    for f in findings:
        if f.candidate is not None and f.candidate.key() == candidate.key():
            proposers.append(f)
        elif candidate.basis and f.kind == candidate.basis and (
                candidate.kind != "code_patch" or f.location == candidate.params.get("location")):
            based.append(f)
    best: Finding | None = None
    for f in proposers or based:
        if best is None or stronger(f, best):
            best = f
    return best


def estimate_of(candidate: Candidate, findings: Sequence[Finding], calibration: Calibration | None = None,
                ) -> dict[str, Any] | None:
    """The estimate row of a candidate about to be tried (None for the knob search's trials,
    which the search picked, not an estimate)."""
    if candidate.kind == "set_config":
        return None
    f = source_finding(candidate, findings)
    estimated = dict(f.estimated_gain) if f is not None else {}
    fit = calibration.fit_for(candidate) if calibration is not None else None
    number = _number
    return {
        "change_kind": candidate.kind, "basis": candidate.basis or (f.kind if f is not None else ""),
        "agent": f.agent if f is not None else None, "location": f.location if f is not None else None,
        "endpoint": candidate.endpoint, "risk": candidate.risk, "expected_gain": candidate.expected_gain,
        "calibrated_gain": round(fit.gain(candidate.expected_gain), 4) if fit is not None else None,
        "calibration": fit.to_dict() if fit is not None else None,
        "whatif_ratio": number(estimated.get("ratio")) if f is not None and f.kind in WHATIF_KINDS else None,
        "cost_before": number(estimated.get("cost_before", estimated.get("ms_per_call_before"))),
        "cost_after": number(estimated.get("cost_after", estimated.get("ms_per_call_after"))),
        "share": (impact(f) or None) if f is not None else None,
        "estimated_gain": estimated, "evidence": f.evidence if f is not None else None,
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def history(store: Any) -> list[dict[str, Any]]:
    """Every tried change's estimate and measurement, oldest run first: change_id, run_id, target,
    kind (the learning kind), change_kind, basis, expected_gain, outcome, metric, measured_ratio,
    measured_lo, measured_hi, source (``recorded``, or ``rebuilt`` from a legacy run's findings)."""
    rows = [dict(r, kind=learning_kind(r["change_kind"], r["basis"]), source="recorded")
            for r in store.learning_rows()]
    findings: dict[tuple[str, Any], list[Finding]] = {}
    for change in store.legacy_changes():
        key = (change["run_id"], change["planned_at"])
        if key not in findings:
            findings[key] = [_finding(r) for r in store.findings_before(change["run_id"], change["planned_at"])]
        rebuilt = rebuild(change, findings[key])
        if rebuilt is not None:
            rows.append(rebuilt)
    return sorted(rows, key=lambda r: (str(r["run_started_at"]), str(r.get("estimated_at") or r.get("planned_at"))))


def rebuild(change: dict[str, Any], findings: list[Finding]) -> dict[str, Any] | None:
    """A legacy change's estimate from its run's findings up to its trial, with its measurement."""
    params = change["params"] or {}
    candidate = Candidate(change["kind"], params, change["description"] or "", risk=change["risk"] or "low")
    proposed = [f for f in findings if f.candidate is not None and f.candidate.key() == candidate.key()]
    if proposed:
        best = max(proposed, key=lambda f: f.candidate.expected_gain if f.candidate else 0.0)
        assert best.candidate is not None
        gain, basis, endpoint = best.candidate.expected_gain, best.kind, best.candidate.endpoint
    elif change["kind"] == "set_knob":
        knob = ((change["spec"] or {}).get("knobs") or {}).get(params.get("knob"), {})
        words = f"{params.get('knob')} {(knob.get('apply') or {}).get('env') or ''} {knob.get('description') or ''}"
        gain, basis, _ = knob_estimate(words.lower(), findings)
        endpoint = None
    elif change["kind"] == "code_patch":
        located = [f for f in findings if f.location == params.get("location")]
        if not located:
            return None
        gain, basis, endpoint = max(impact(f) for f in located), max(located, key=impact).kind, None
    else:
        return None
    effect = change["effect"] or effect_from_reason(change.get("reason"))
    ci = effect.get("ci95") or [None, None]
    return {"change_id": change["change_id"], "run_id": change["run_id"], "target": change["target"],
            "change_kind": change["kind"], "basis": basis, "kind": learning_kind(change["kind"], basis),
            "endpoint": endpoint, "risk": change["risk"], "expected_gain": gain, "outcome": change["status"], "metric": effect.get("metric"),
            "measured_ratio": effect.get("ratio"), "measured_lo": ci[0], "measured_hi": ci[1],
            "run_started_at": change["run_started_at"], "planned_at": change["planned_at"], "source": "rebuilt"}


# the decision's reason starts with its effect: "p50 x0.926 [0.725, 1.2] on total ..." (older
# runs: "p95 ratio 0.864 [0.783, 0.985] ..."); the journal of those runs kept no effect for a revert
_REASON_EFFECT = re.compile(r"^(p50|p95|p99|rps)(?: ratio)? x?([0-9.e+-]+) \[([0-9.e+-]+), ([0-9.e+-]+)\]")


def effect_from_reason(reason: str | None) -> dict[str, Any]:
    """A legacy revert's effect (metric, ratio, ci95) read back from its reason; {} when it has none."""
    found = _REASON_EFFECT.match(reason or "")
    if not found:
        return {}
    name, ratio, lo, hi = found.groups()
    try:
        values = [float(ratio), float(lo), float(hi)]
    except ValueError:
        return {}
    return {"metric": name if name == "rps" else f"{name}_ms", "ratio": values[0], "ci95": values[1:]}


def _finding(row: dict[str, Any]) -> Finding:
    cand = row.get("candidate")
    candidate = None
    if isinstance(cand, dict) and cand.get("kind"):
        candidate = Candidate(cand["kind"], cand.get("params") or {}, cand.get("description") or "",
                              risk=cand.get("risk") or "low", expected_gain=float(cand.get("expected_gain") or 0.0),
                              endpoint=cand.get("endpoint"), basis=cand.get("basis") or "")
    return Finding(row["agent"], row["kind"], row["location"] or "", row["severity"] or "low", row["evidence"] or {},
                   row["estimated_gain"] or {}, row.get("endpoint"), candidate)


def observations(rows: Iterable[dict[str, Any]]) -> list[Observation]:
    """The history rows that calibrate: a measured ratio with its interval, and an estimate."""
    out = []
    for r in rows:
        o = observation(r["kind"], r["run_id"], r["expected_gain"], r["metric"], r["measured_ratio"],
                        r["measured_lo"], r["measured_hi"])
        if o is not None:
            out.append(o)
    return out


def fit_history(store: Any) -> Calibration:
    """The calibration the next ranking uses, fitted on the store's whole history."""
    return fit_calibration(observations(history(store)))


def kind_summary(rows: Sequence[dict[str, Any]], calibration: Calibration | None = None) -> list[dict[str, Any]]:
    """Per kind, estimated against measured: changes tried and how they ended; over those with a
    measured interval, the geometric-mean estimated and measured ratios (below 1 = faster; a
    throughput decision's ratio inverted) and the share of the estimated log-gain that came true
    (posterior mean and 95% interval; 1 = as estimated)."""
    obs = observations(rows)
    calibration = calibration if calibration is not None else fit_calibration(obs)
    kinds = sorted({r["kind"] for r in rows})
    out = []
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        measured = [o for o in obs if o.kind == kind]
        fit = calibration.kinds.get(kind)
        row: dict[str, Any] = {"kind": kind, "tried": len(mine),
                               **{s: sum(1 for r in mine if r["outcome"] == s) for s in ("kept", "reverted", "failed")},
                               "measured": len(measured), "estimated_ratio": None, "measured_ratio": None,
                               "share": None, "share_ci95": None}
        if measured:
            row["estimated_ratio"] = round(math.exp(sum(o.x for o in measured) / len(measured)), 4)
            row["measured_ratio"] = round(math.exp(sum(o.log_ratio for o in measured) / len(measured)), 4)
        if fit is not None:
            d = fit.to_dict()
            row["share"], row["share_ci95"] = d["share"], d["share_ci95"]
        out.append(row)
    return out
