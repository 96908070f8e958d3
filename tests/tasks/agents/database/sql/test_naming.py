"""The names of the indexes perfagents proposes."""

from __future__ import annotations

from tasks.agents.database.sql.naming import index_name


def test_index_names_are_safe_and_distinct():
    assert index_name("orders", ["user_id"]) == "perfagents_orders_user_id"
    odd = index_name('we"ird', ["a b"])
    assert odd.startswith("perfagents_we_ird_a_b_") and odd != index_name("we ird", ["a b"])
    assert len(index_name("t" * 100, ["c" * 100])) <= 60
