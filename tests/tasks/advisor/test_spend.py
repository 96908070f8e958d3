"""Budgets, model selection and the answer cache: the real client, the replay server, a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.advisor.advise import advise, record_outcome
from tasks.advisor.client import ChatClient
from tasks.advisor.context import build_context
from tasks.advisor.spend import PROMPT_MARGIN, AnswerCache, Spend
from tasks.budget import Budget, Ledger
from tasks.spec_advisor import LlmSpec
from tasks.store import Store

MODELS = [{"name": "small-model", "usd_per_1m_input": 0.25, "usd_per_1m_output": 2.0},
          {"name": "large-model", "usd_per_1m_input": 3.0, "usd_per_1m_output": 15.0}]
MAX_OUT = 500


def llm(url: str) -> LlmSpec:
    return LlmSpec(base_url=url, models=MODELS, max_context_tokens=4000, max_output_tokens=MAX_OUT,
                   timeout_s=5, max_retries=0)


def ask(replay, finding, source: Path, store: Store, budget: Budget | None = None, after: str | None = None):
    spec = llm(replay.url)
    spend = Spend(Ledger(budget or Budget()))
    ctx = build_context(finding, source, spec.max_context_tokens)
    cache = AnswerCache(store)
    return advise(ctx, spec, ChatClient(spec), spend, cache, source, after=after), spend, cache, ctx


def reported(replay) -> tuple[int, int]:
    ok = [r["usage"] for r in replay.requests if r.get("usage")]
    return sum(u["prompt_tokens"] for u in ok), sum(u["completion_tokens"] for u in ok)


def test_the_cheapest_model_fixes_the_n_plus_one_and_the_ledger_is_the_providers(
        replay, recorded, shop_source: Path, store: Store) -> None:
    advice, spend, _, ctx = ask(replay, recorded["n_plus_one"], shop_source, store)
    assert advice.result == "patch" and advice.model == "small-model" and advice.check is not None
    assert advice.check.paths == ("catalog.py",)
    tokens_in, tokens_out = reported(replay)
    assert replay.requests[0]["usage"]["prompt_tokens"] == ctx.tokens <= 4000  # the fitted prompt, as sent
    summary = spend.summary()
    assert (summary["calls"], summary["tokens_in"], summary["tokens_out"]) == (1, tokens_in, tokens_out)
    assert spend.ledger.tokens == tokens_in + tokens_out
    assert spend.ledger.usd == pytest.approx((tokens_in * 0.25 + tokens_out * 2.0) / 1e6)
    assert spend.reserved_tokens == 0 and spend.reserved_usd == pytest.approx(0)


def test_a_second_run_on_unchanged_code_spends_nothing(replay, recorded, shop_source: Path, store: Store) -> None:
    ask(replay, recorded["n_plus_one"], shop_source, store)
    again, spend, _, _ = ask(replay, recorded["n_plus_one"], shop_source, store)
    assert again.result == "patch" and len(replay.requests) == 1
    assert spend.ledger.tokens == 0 and spend.summary()["cache_hits"] == 1 and spend.summary()["calls"] == 0
    db = shop_source / "db.py"
    db.write_text(db.read_text() + "\n# a change to no function shown\n")
    ask(replay, recorded["n_plus_one"], shop_source, store)
    assert len(replay.requests) == 1
    db.write_text(db.read_text().replace("params).fetchall()", "params).fetchall()  # changed"))
    ask(replay, recorded["n_plus_one"], shop_source, store)
    assert len(replay.requests) == 2  # Database.query, shown in the prompt, changed: asked again


def test_no_patch_escalates_to_the_larger_model(replay, recorded, shop_source: Path, store: Store) -> None:
    advice, spend, _, _ = ask(replay, recorded["score_product"], shop_source, store)
    assert [t["outcome"] for t in advice.tries] == ["no_patch", "applies"]
    assert advice.result == "patch" and advice.model == "large-model"
    assert [r["body"]["model"] for r in replay.requests] == ["small-model", "large-model"]
    assert set(spend.summary()["by_model"]) == {"small-model", "large-model"}


def test_a_reverted_patch_escalates_and_is_not_reused(replay, recorded, shop_source: Path, store: Store) -> None:
    first, _, cache, _ = ask(replay, recorded["score_product"], shop_source, store)
    record_outcome(cache, first, "reverted")
    after, spend, _, _ = ask(replay, recorded["score_product"], shop_source, store, after=first.model)
    assert after.result == "no_patch" and after.tries == []  # no larger model left
    rerun, spend, _, _ = ask(replay, recorded["score_product"], shop_source, store)
    assert rerun.result == "no_patch" and [t["outcome"] for t in rerun.tries] == ["no_patch", "reverted"]
    assert len(replay.requests) == 2 and spend.ledger.tokens == 0  # both known failures, from the cache


def test_a_patch_that_does_not_apply_escalates(replay, recorded, shop_source: Path, store: Store) -> None:
    advice, spend, _, _ = ask(replay, recorded["checkout"], shop_source, store)
    assert advice.result == "no_patch"
    assert [t["outcome"] for t in advice.tries] == ["does_not_apply", "does_not_apply"]
    assert spend.summary()["calls"] == 2


@pytest.mark.parametrize("kind", ["tokens", "usd"])
def test_the_budget_runs_out_before_a_call_could_pass_it(replay, recorded, shop_source: Path, store: Store,
                                                        kind: str) -> None:
    ctx = build_context(recorded["score_product"], shop_source, 4000)
    worst_in = int(ctx.tokens * (1 + PROMPT_MARGIN[0])) + PROMPT_MARGIN[1]
    small_worst = (worst_in * 0.25 + MAX_OUT * 2.0) / 1e6
    budget = (Budget(tokens=worst_in + MAX_OUT + 100) if kind == "tokens"
              else Budget(usd=small_worst * 1.5))  # the small call fits, the large one's worst case does not
    advice, spend, _, _ = ask(replay, recorded["score_product"], shop_source, store, budget)
    assert advice.result == "budget_exhausted" and spend.exhausted == kind
    assert [r["body"]["model"] for r in replay.requests] == ["small-model"]
    tokens_in, tokens_out = reported(replay)
    assert spend.ledger.tokens == tokens_in + tokens_out  # exact: the provider's usage
    assert spend.ledger.exhausted_by(next_iteration=False) is None  # never past the budget
    assert spend.reserved_tokens == 0


def test_a_failed_call_charges_nothing(replay, recorded, shop_source: Path, store: Store) -> None:
    replay.fail_next(500, times=5)
    advice, spend, _, _ = ask(replay, recorded["n_plus_one"], shop_source, store)
    assert advice.result == "error" and "500" in advice.detail
    assert spend.ledger.tokens == 0 and spend.reserved_tokens == 0 and spend.summary()["calls"] == 0
