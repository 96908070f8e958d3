"""What the advisor's calls may spend, what they spent, and the answers they bought.

``Spend`` is the LLM side of the run's Ledger (tasks/budget.py, whose ``tokens`` and ``usd``
the budget ``--budget tokens=...,usd=...`` limits). Before a call it *reserves* the call's worst
case: the prompt's tokens (counted here, plus PROMPT_MARGIN for a server whose tokenizer counts
more) and all of ``max_tokens`` for the answer, at that model's price. A call whose reservation
does not fit what is left of either budget is not made. After the call it *settles* with the
provider's ``usage`` (the reservation when the server reported none). ``summary()`` is the
``--json`` result's ``llm`` block.

``AnswerCache``: answers keyed by what decides them (the finding kinds and location, a hash of
the source shown, the model, the prompt version), not by one run's numbers: a second run on
unchanged code asks nothing. Kept in the DuckDB store (``llm_answers``, tasks/store), with what
became of each answer, so a patch the gate reverted is not tried again from the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tasks.advisor.client import Usage
from tasks.advisor.context import PROMPT_VERSION, Context
from tasks.budget import Ledger
from tasks.spec_advisor import ModelPrice
from tasks.store import Store

PROMPT_MARGIN = (0.10, 16)  # reserve 10% + 16 more prompt tokens than counted (other tokenizers)


@dataclass(frozen=True)
class Reservation:
    model: ModelPrice
    tokens: int
    usd: float


@dataclass
class ModelSpend:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0


@dataclass
class Spend:
    ledger: Ledger
    reserved_tokens: int = 0
    reserved_usd: float = 0.0
    cache_hits: int = 0
    by_model: dict[str, ModelSpend] = field(default_factory=dict)
    exhausted: str | None = None  # the budget a refused reservation would have passed

    def reserve(self, model: ModelPrice, prompt_tokens: int, max_tokens: int) -> Reservation | None:
        """The call's worst case held against the budget; None (and ``exhausted`` set) if it does not fit."""
        tokens_in = int(prompt_tokens * (1 + PROMPT_MARGIN[0])) + PROMPT_MARGIN[1]
        worst = Reservation(model, tokens_in + max_tokens, model.usd(tokens_in, max_tokens))
        budget = self.ledger.budget
        if budget.tokens is not None and self.ledger.tokens + self.reserved_tokens + worst.tokens > budget.tokens:
            self.exhausted = "tokens"
            return None
        if budget.usd is not None and self.ledger.usd + self.reserved_usd + worst.usd > budget.usd:
            self.exhausted = "usd"
            return None
        self.reserved_tokens += worst.tokens
        self.reserved_usd += worst.usd
        return worst

    def release(self, reservation: Reservation) -> None:
        """A call that failed: nothing was answered, nothing is charged."""
        self.reserved_tokens -= reservation.tokens
        self.reserved_usd -= reservation.usd

    def settle(self, reservation: Reservation, usage: Usage | None) -> float:
        """Charge the call's actual usage (the reservation's worst case without one); returns its USD."""
        self.release(reservation)
        model = reservation.model
        if usage is None:
            tokens_in, tokens_out, usd = reservation.tokens, 0, reservation.usd
        else:
            tokens_in, tokens_out = usage.prompt_tokens, usage.completion_tokens
            usd = model.usd(tokens_in, tokens_out)
        self.ledger.tokens += tokens_in + tokens_out
        self.ledger.usd += usd
        spent = self.by_model.setdefault(model.name, ModelSpend())
        spent.calls += 1
        spent.tokens_in += tokens_in
        spent.tokens_out += tokens_out
        spent.usd += usd
        return usd

    def summary(self) -> dict[str, Any]:
        """The ``llm`` block of the --json result (DESIGN.md)."""
        by_model = {name: {"calls": m.calls, "tokens_in": m.tokens_in, "tokens_out": m.tokens_out,
                           "usd": round(m.usd, 6)} for name, m in self.by_model.items()}
        return {"calls": sum(m.calls for m in self.by_model.values()), "cache_hits": self.cache_hits,
                "tokens_in": sum(m.tokens_in for m in self.by_model.values()),
                "tokens_out": sum(m.tokens_out for m in self.by_model.values()),
                "usd": round(sum(m.usd for m in self.by_model.values()), 6), "by_model": by_model}


def cache_key(ctx: Context, model: str) -> str:
    """What decides an answer: finding kinds and location, the source shown, model, prompt version."""
    kinds = sorted({f.kind for f in ctx.findings})
    parts = [kinds, ctx.findings[0].location, ctx.source_hash, model, PROMPT_VERSION]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    outcome: str | None


class AnswerCache:
    """Answers in the store's ``llm_answers`` table (tasks/store owns the SQL)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str) -> CachedAnswer | None:
        row = self.store.cached_answer(key)
        return CachedAnswer(row["answer"], row["outcome"]) if row else None

    def put(self, key: str, ctx: Context, model: str, text: str, usage: Usage | None) -> None:
        self.store.save_answer(key, kind=",".join(sorted({f.kind for f in ctx.findings})),
                               location=ctx.findings[0].location, source_hash=ctx.source_hash, model=model,
                               prompt_version=PROMPT_VERSION, answer=text,
                               prompt_tokens=usage.prompt_tokens if usage else None,
                               completion_tokens=usage.completion_tokens if usage else None)

    def set_outcome(self, key: str, outcome: str | None) -> None:
        self.store.set_answer_outcome(key, outcome)
