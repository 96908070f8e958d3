from __future__ import annotations

import pytest

from tasks.errors import ExpressionError
from tasks.expressions import parse_expression, parse_expressions


def test_absolute_and_relative_expressions() -> None:
    goal = parse_expression("p95_ms<=200")
    assert (goal.metric, goal.op, goal.value, goal.relative) == ("p95_ms", "<=", 200.0, False)
    assert goal.holds(150) and not goal.holds(250)
    rel = parse_expression("p99_ms <= 1.1*baseline")
    assert rel.relative and rel.threshold({"p99_ms": 100}) == pytest.approx(110)
    assert rel.holds(109, {"p99_ms": 100}) and not rel.holds(111, {"p99_ms": 100})
    assert parse_expression("responses==baseline").relative


def test_endpoint_scoped_expression() -> None:
    e = parse_expression("p95_ms[checkout]<=200")
    assert e.endpoint == "checkout" and e.metric == "p95_ms"


@pytest.mark.parametrize(
    ("text", "token"),
    [("p95<=200", "'p95'"), ("p95_ms<=fast", "'fast'"), ("p95_ms=>200", "bad expression"),
     ("", "empty"), ("responses<=3", "baseline"), ("rps>=2*base", "'2*base'")],
)
def test_bad_expressions_name_the_token(text: str, token: str) -> None:
    with pytest.raises(ExpressionError) as err:
        parse_expression(text)
    assert token in str(err.value) and "\n" not in str(err.value)


def test_comma_separated_list() -> None:
    assert [e.metric for e in parse_expressions("p95_ms<=50, rps>=400")] == ["p95_ms", "rps"]
