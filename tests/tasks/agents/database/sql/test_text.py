"""The small SQL tokenizer: normalization and filter columns."""

from __future__ import annotations

import pytest

from tasks.agents.database.sql.text import (
    ColumnUse,
    filter_columns,
    normalize_sql,
    null_params,
    table_refs,
    tokenize,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("select * from t where a = 5 and b='x'", "SELECT *  FROM t WHERE a=-7.5 AND b = 'it''s'"),
        ("select * from t where id in (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"),
        ("insert into t (a, b) values (1, 2), (7, 8)", "INSERT INTO t(a,b) VALUES (3,4),(5,6),(0,0)"),
        ("select x from t where y = :name -- why", "select x from t /* c */ where y = $v;"),
        ("select * from t where flag = true", "select * from t where flag = 0"),
    ],
)
def test_statements_differing_only_in_literals_normalize_alike(a, b):
    assert normalize_sql(a) == normalize_sql(b)


def test_normalized_text_is_readable_and_keeps_structure():
    assert normalize_sql("select count(*) from orders o where o.id in (1,2) and x'00' = b") == (
        "SELECT count(*) FROM orders o WHERE o.id IN (...) AND ? = b"
    )
    assert normalize_sql('SELECT "we""ird".c FROM "we""ird" WHERE c > 1e3') == 'SELECT "we""ird".c FROM "we""ird" WHERE c > ?'
    assert normalize_sql("update t set a = a - 1 where id = 3") == "UPDATE t SET a = a - ? WHERE id = ?"
    assert normalize_sql("select * from t where a = 1") != normalize_sql("select * from t where b = 1")
    assert normalize_sql("insert into t values (1)") == "INSERT INTO t VALUES (?)"  # one row is its own shape


def test_null_params_bind_every_placeholder():
    assert null_params("select ?, ?, ?5") == (None,) * 5
    assert null_params("select ?1, ?1") == (None,)
    assert null_params("select :a, @b, $c") == {"a": None, "b": None, "c": None}
    assert null_params("select 1") == ()


def test_table_refs_and_aliases():
    refs = table_refs(tokenize('select * from orders o join "user s" as u on u.id = o.user_id, items where 1'))
    assert [(r.table, r.alias) for r in refs] == [("orders", "o"), ("user s", "u"), ("items", None)]


def test_filter_columns_equality_range_and_joins():
    uses = filter_columns(
        "select * from orders o join users u on u.id = o.user_id "
        "where o.status = ? and ? < o.amount and o.day between 1 and 5 and lower(o.n) = ? and o.k is not null"
    )
    assert uses == [
        ColumnUse("u", "id", "eq"), ColumnUse("o", "user_id", "eq"), ColumnUse("o", "status", "eq"),
        ColumnUse("o", "amount", "range"), ColumnUse("o", "day", "range"),
    ]
    assert filter_columns("select * from t where a = 1 or b = 2") == []  # OR: no simple index
