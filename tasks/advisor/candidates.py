"""The advisor inside the loop: code-level findings become ``code_patch`` candidates.

Opt-in: ``open_advisor`` returns None (and nothing here runs, no network is touched) unless
the spec has ``llm:`` and ``code.allow_changes``. Each group of code-level findings that share
a function is one question (tasks.advisor.context); ``advise`` answers it with a patch, the
cheapest model first. The patch is tried like any change (journaled, applied, measured, kept
or reverted); what became of it goes back to the answer cache (``record_outcome``), so the next
question about the same function skips the failed answer and escalates to the next model. A
group whose every model failed (no patch, does not apply, reverted) stays a reported finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks import progress
from tasks.advisor.advise import Advice, advise, record_outcome
from tasks.advisor.client import ChatClient
from tasks.advisor.context import build_context, group_by_function
from tasks.advisor.source import split_location
from tasks.advisor.spend import AnswerCache, Spend
from tasks.budget import Ledger
from tasks.findings import SEVERITY_RANK, Candidate, Finding, impact
from tasks.spec import TargetSpec
from tasks.spec_advisor import LlmSpec
from tasks.store import Store

PATCHES_DIR = "patches"  # next to the store: .perfagents/patches/<change_id>.diff


@dataclass
class Advisor:
    llm: LlmSpec
    source_dir: Path
    client: ChatClient
    spend: Spend
    cache: AnswerCache
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)  # per function: questions asked
    done: set[tuple[str, str]] = field(default_factory=set)  # functions kept, or every model failed
    pending: dict[str, tuple[tuple[str, str], Advice]] = field(default_factory=dict)  # candidate key ->
    exhausted: str | None = None  # why the budget ended the questions
    notes: list[dict[str, Any]] = field(default_factory=list)  # per question: location, result, tries


def open_advisor(spec: TargetSpec, store: Store, ledger: Ledger) -> Advisor | None:
    if spec.llm is None or spec.code is None or not spec.code.allow_changes:
        return None
    source_dir = (spec.spec_dir / spec.code.source_dir).resolve()
    return Advisor(spec.llm, source_dir, ChatClient(spec.llm), Spend(ledger), AnswerCache(store))


def _group_key(group: list[Finding]) -> tuple[str, str]:
    return split_location(group[0].location)


def open_questions(adv: Advisor, findings: list[Finding]) -> int:
    """Functions with code-level findings the advisor has not settled yet."""
    return sum(1 for g in group_by_function(findings) if _group_key(g) not in adv.done)


def next_code_candidate(adv: Advisor, findings: list[Finding], rival: Candidate | None) -> Candidate | None:
    """A patch for the most costly open code-level finding, unless ``rival`` (the best other
    candidate) promises more; ``rival`` when no question yields a patch. Sets ``exhausted``
    (and returns None) when the budget cannot carry the next question."""
    groups = [g for g in group_by_function(findings) if _group_key(g) not in adv.done]
    # the strongest evidence first: severity, then the share of time it names (an N+1 names none)
    groups.sort(key=lambda g: max((SEVERITY_RANK[f.severity], impact(f)) for f in g), reverse=True)
    for group in groups:
        if rival is not None and rival.expected_gain > max(impact(f) for f in group):
            break
        key = _group_key(group)
        if adv.attempts.get(key, 0) >= len(adv.llm.models):
            adv.done.add(key)
            continue
        adv.attempts[key] = adv.attempts.get(key, 0) + 1
        ctx = build_context(group, adv.source_dir, adv.llm.max_context_tokens)
        advice = advise(ctx, adv.llm, adv.client, adv.spend, adv.cache, adv.source_dir)
        note = {"location": group[0].location, "result": advice.result, "model": advice.model,
                "prompt_tokens": ctx.tokens, "tries": advice.tries, "detail": advice.detail}
        adv.notes.append(note)
        progress.emit("advice", **note)
        if advice.result == "budget_exhausted":
            adv.exhausted = advice.detail
            return None
        if advice.result != "patch" or advice.check is None or advice.check.diff is None:
            adv.done.add(key)  # no patch from any model (or the server failed): the finding stays reported
            continue
        check = advice.check
        candidate = Candidate(
            kind="code_patch",
            params={"source_dir": str(adv.source_dir), "diff": check.diff, "paths": list(check.paths),
                    "strip": check.strip, "location": group[0].location, "model": advice.model},
            description=f"code patch for {', '.join(sorted({f.kind for f in group}))} at {group[0].location} "
                        f"({advice.model})",
            risk="medium", expected_gain=max(impact(f) for f in group),
            endpoint=next((f.endpoint for f in group if f.endpoint), None), basis=max(group, key=impact).kind)
        adv.pending[candidate.key()] = (key, advice)
        return candidate
    return rival


def outcome_of(status: str, reason: str | None) -> str:
    if status == "kept":
        return "kept"
    if reason and ("responses==baseline" in reason or "quality threshold broken" in reason):
        return "broke_correctness"
    return "does_not_apply" if status == "failed" else "reverted"


def settle_patch(adv: Advisor, store: Store, change_id: str | None, candidate: Candidate,
                 row: dict[str, Any]) -> None:
    """What the loop made of a patch: back to the cache (escalation), its diff under patches/."""
    key, advice = adv.pending.pop(candidate.key(), (None, None))
    outcome = outcome_of(row["status"], row.get("reason"))
    if advice is not None:
        record_outcome(adv.cache, advice, outcome)
    if key is not None and outcome == "kept":
        adv.done.add(key)
    if change_id is not None:
        row["patch"] = str(write_patch(store, change_id, candidate, row))


def write_patch(store: Store, change_id: str, candidate: Candidate, row: dict[str, Any]) -> Path:
    """The diff, headed by what was measured (``git apply`` skips the lines before the diff)."""
    folder = store.path.parent / PATCHES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    effect = row.get("effect") or {}
    head = [f"perfagents change {change_id}: {row['status']} ({row.get('reason') or ''})",
            f"location: {candidate.params.get('location')}  model: {candidate.params.get('model')}",
            f"source_dir: {candidate.params.get('source_dir')}"]
    if effect.get("ratio") is not None:
        head.append(f"effect: {effect.get('metric')} on {effect.get('endpoint')}: "
                    f"{effect.get('before')} -> {effect.get('after')}, ratio {effect['ratio']}, "
                    f"95% CI {effect.get('ci95')}")
    path = folder / f"{change_id}.diff"
    path.write_text("\n".join("# " + " ".join(line.split()) for line in head) + "\n\n" + candidate.params["diff"])
    return path.resolve()
