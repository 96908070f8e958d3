"""Ask for a patch: the cheapest model first, a larger one only when the answer failed.

For one fitted Context, the spec's models are tried in order (after ``after``, the model whose
patch the loop just reverted). Each try: the answer cache first (a stored answer that already
failed is skipped to the next model at no cost), else reserve the call's worst case, call,
settle with the provider's usage and store the answer. The answer is checked
(tasks/advisor/patch.py); ``applies`` ends the search. ``no_patch``, ``refused`` and
``does_not_apply`` escalate; so do ``reverted`` and ``broke_correctness`` when the loop
reports them (``record_outcome``) and calls again with ``after``. A reservation that does not
fit ends the search as ``budget_exhausted`` (the run then stops cleanly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tasks.advisor.client import ChatClient
from tasks.advisor.context import Context
from tasks.advisor.patch import PatchCheck, check_answer
from tasks.advisor.spend import AnswerCache, Spend, cache_key
from tasks.errors import LlmError
from tasks.spec_advisor import LlmSpec

FAILED = frozenset({"no_patch", "refused", "does_not_apply", "reverted", "broke_correctness"})
Result = Literal["patch", "no_patch", "budget_exhausted", "error"]


@dataclass
class Advice:
    result: Result
    check: PatchCheck | None = None
    model: str | None = None
    cache_key: str | None = None
    tries: list[dict[str, Any]] = field(default_factory=list)  # model, cached, outcome, detail
    detail: str = ""


def advise(ctx: Context, llm: LlmSpec, client: ChatClient, spend: Spend, cache: AnswerCache,
           source_dir: Path, *, after: str | None = None) -> Advice:
    names = [m.name for m in llm.models]
    start = names.index(after) + 1 if after in names else 0
    advice = Advice("no_patch")
    for model in llm.models[start:]:
        key = cache_key(ctx, model.name)
        hit = cache.get(key)
        if hit is not None and hit.outcome in FAILED:
            advice.tries.append({"model": model.name, "cached": True, "outcome": hit.outcome})
            continue
        if hit is not None:
            spend.cache_hits += 1
            text = hit.text
        else:
            reservation = spend.reserve(model, ctx.tokens, llm.max_output_tokens)
            if reservation is None:
                advice.result, advice.detail = "budget_exhausted", f"the {spend.exhausted} budget"
                return advice
            try:
                answer = client.complete(model.name, ctx.messages, max_tokens=llm.max_output_tokens)
            except LlmError as exc:
                spend.release(reservation)
                advice.result, advice.detail = "error", str(exc)
                return advice
            spend.settle(reservation, answer.usage)
            text = answer.text
            cache.put(key, ctx, model.name, text, answer.usage)
        check = check_answer(text, source_dir)
        cache.set_outcome(key, check.outcome)
        advice.tries.append({"model": model.name, "cached": hit is not None, "outcome": check.outcome,
                             "detail": check.detail})
        if check.outcome == "applies":
            advice.result, advice.check, advice.model, advice.cache_key = "patch", check, model.name, key
            return advice
    return advice


def record_outcome(cache: AnswerCache, advice: Advice, outcome: str) -> None:
    """What the loop made of the patch (``kept``, ``reverted``, ``broke_correctness``)."""
    if advice.cache_key is not None:
        cache.set_outcome(advice.cache_key, outcome)
