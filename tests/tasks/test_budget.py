from __future__ import annotations

import pytest

from tasks.budget import Budget, Ledger, parse_budget
from tasks.errors import BudgetError


def test_parse_budget_string_and_mapping() -> None:
    assert parse_budget("minutes=15,iterations=8,tokens=50000") == Budget(minutes=15, iterations=8, tokens=50000)
    assert parse_budget({"load_seconds": 60}).load_s == 60


@pytest.mark.parametrize("text", ["minutes", "minutes=abc", "hours=3", "iterations=-1", "minutes=0"])
def test_bad_budget(text: str) -> None:
    with pytest.raises(BudgetError):
        parse_budget(text)


def test_ledger_names_the_budget_that_ends_the_run() -> None:
    ledger = Ledger(Budget(iterations=2, load_s=100))
    assert ledger.exhausted_by(next_load_s=20) is None
    ledger.iterations = 2
    assert ledger.exhausted_by(next_load_s=20) == "iterations"
    ledger.iterations, ledger.load_s = 0, 90
    assert ledger.exhausted_by(next_load_s=20) == "load_s"


def test_a_reserve_keeps_iterations_back_for_later_steps() -> None:
    ledger = Ledger(Budget(iterations=5))
    ledger.iterations = 2
    assert ledger.exhausted_by(reserve=2) is None  # 3rd iteration, and 2 more still fit
    ledger.iterations = 3
    assert ledger.exhausted_by(reserve=2) == "iterations"
    assert ledger.exhausted_by() is None


def test_a_run_without_a_minutes_budget_still_has_a_wall_clock_bound() -> None:
    import time

    from tasks.budget import DEFAULT_MAX_MINUTES

    ledger = Ledger(parse_budget("iterations=100"))
    assert ledger.exhausted_by(next_load_s=20) is None
    ledger.started = time.monotonic() - DEFAULT_MAX_MINUTES * 60 + 10  # 10 s before the default bound
    assert ledger.exhausted_by(next_load_s=5) is None
    assert ledger.exhausted_by(next_load_s=20) == "minutes"
    longer = Ledger(parse_budget(f"minutes={DEFAULT_MAX_MINUTES * 2}"), started=ledger.started)
    assert longer.exhausted_by(next_load_s=20) is None  # a budget the user set wins
