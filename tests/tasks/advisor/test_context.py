"""Context building: the located function and what it calls, ranked, compressed, fitted exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.advisor.context import INSTRUCTIONS, build_context, group_by_function
from tasks.advisor.facts import key_facts
from tasks.advisor.source import (
    callees,
    compact,
    load_function,
    module_file,
    signature,
    split_location,
)
from tasks.advisor.tokens import count_messages
from tasks.findings import Finding

ROOT = Path(__file__).resolve().parents[3]
SHOP = ROOT / "reference_workflows" / "ecommerce"


def test_locations_resolve_under_source_dir_only(tmp_path: Path) -> None:
    assert split_location("pkg.mod:cached.<locals>.wrapper") == ("pkg.mod", "cached.wrapper")
    assert split_location("pkg.mod:f.<locals>.<lambda>") == ("pkg.mod", "f")
    assert module_file("reference_workflows.ecommerce.catalog", ROOT) == SHOP / "catalog.py"
    assert module_file("reference_workflows.ecommerce.catalog", SHOP) == SHOP / "catalog.py"  # leading packages dropped
    assert module_file("reference_workflows.ecommerce.catalog", tmp_path) is None
    assert module_file(str(SHOP / "catalog.py"), tmp_path) is None  # an absolute path elsewhere
    assert module_file("../ecommerce/catalog.py", SHOP / "static") is None


def test_the_located_function_exact_and_its_callees(recorded) -> None:
    N_PLUS_ONE, SCORE = recorded["n_plus_one"], recorded["score_product"]
    fn = load_function(N_PLUS_ONE.location, SHOP)
    assert fn is not None and fn.path == "catalog.py" and (fn.first_line, fn.last_line) == (53, 63)
    assert fn.text == "\n".join((SHOP / "catalog.py").read_text().splitlines()[52:63])
    assert [c.location for c in callees(fn, SHOP)] == ["reference_workflows.ecommerce.db:Database.query"]
    score = load_function(SCORE.location, SHOP)
    assert score is not None
    assert [c.qualname for c in callees(score, SHOP)] == ["tokenize", "similarity"]
    assert compact(score).count("\n") < score.text.count("\n") and '"""' not in compact(score)
    assert signature(score).splitlines()[0].startswith("def score_product(") and "..." in signature(score)


def test_a_prompt_fits_and_keeps_every_key_fact_at_4000(recorded) -> None:
    N_PLUS_ONE = recorded["n_plus_one"]
    ctx = build_context(N_PLUS_ONE, SHOP, 4000)
    assert ctx.messages[0] == {"role": "system", "content": INSTRUCTIONS}  # static first: prompt caching
    assert ctx.tokens == count_messages(ctx.messages) <= 4000
    assert ctx.tokens < 2500  # only as long as the finding needs
    assert all(f.found_in(ctx.prompt) for f in key_facts(N_PLUS_ONE, ctx.located))
    assert ctx.shown["located"] == "exact" and not ctx.left_out
    assert "get_product" in ctx.prompt and "Database.query" in ctx.prompt  # its caller, its callee


@pytest.mark.parametrize("budget", [2000, 1000, 700, 560])
def test_smaller_budgets_drop_the_least_relevant_first(recorded, budget: int) -> None:
    ctx = build_context(recorded["score_product"], SHOP, budget)
    assert ctx.tokens <= budget
    assert "evidence:0" in ctx.shown and "located" in ctx.shown
    order = ["evidence:0", "located", "callee:reference_workflows.ecommerce.search:edit_distance",
             "callee:reference_workflows.ecommerce.search:similarity", "imports", "more:0"]
    kept = [key in ctx.shown for key in order]
    assert kept == sorted(kept, reverse=True), ctx.shown  # never a less relevant piece without a more relevant one


def test_tiny_budget_is_still_never_exceeded(recorded) -> None:
    ctx = build_context(recorded["n_plus_one"], SHOP, 512)
    assert ctx.tokens <= 512 and ctx.prompt.startswith(INSTRUCTIONS[:40])


def test_the_source_hash_follows_the_code_not_the_numbers(recorded, tmp_path: Path) -> None:
    N_PLUS_ONE = recorded["n_plus_one"]
    a = build_context(N_PLUS_ONE, SHOP, 4000)
    other_numbers = Finding(**{**N_PLUS_ONE.to_dict(), "candidate": None,
                               "evidence": {**N_PLUS_ONE.evidence, "ms_per_request": 9.9}})
    assert build_context(other_numbers, SHOP, 4000).source_hash == a.source_hash
    for name in ("catalog.py", "db.py"):
        (tmp_path / name).write_text((SHOP / name).read_text())
    assert build_context(N_PLUS_ONE, tmp_path, 4000).source_hash == a.source_hash
    (tmp_path / "db.py").write_text((SHOP / "db.py").read_text().replace("fetchall()", "fetchall()  # x"))
    assert build_context(N_PLUS_ONE, tmp_path, 4000).source_hash != a.source_hash


def test_no_source_means_evidence_only(recorded, tmp_path: Path) -> None:
    ctx = build_context(recorded["n_plus_one"], tmp_path, 2000)
    assert ctx.located is None and "## Source" not in ctx.prompt and "SELECT name FROM customers" in ctx.prompt


def test_findings_on_one_function_share_one_prompt(recorded) -> None:
    r = recorded
    groups = group_by_function([r["n_plus_one"], r["edit_distance"], r["score_product"], r["n_plus_one"]])
    assert [len(g) for g in groups] == [2, 1, 1]
    ctx = build_context(groups[0], SHOP, 4000)
    assert "evidence:1" in ctx.shown and ctx.prompt.count("## Source") == 1
