"""The one small grammar for goals and quality thresholds.

    expr     := metric [ "[" endpoint "]" ] op value
    op       := "<=" | ">=" | "<" | ">" | "=="
    value    := number | number "*" "baseline" | "baseline"

Examples: ``p95_ms<=200``, ``rps>=500``, ``p99_ms<=1.1*baseline``,
``p95_ms[checkout]<=200`` (one endpoint, by its Locust name), ``responses==baseline``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tasks.errors import ExpressionError

METRICS = frozenset(
    {
        "p50_ms", "p95_ms", "p99_ms", "mean_ms", "rps", "error_rate", "requests",
        "lcp_ms", "fcp_ms", "ttfb_ms", "cls", "tbt_ms", "responses", "usd_per_hour",
    }
)
MAX_EXPRESSION_CHARS = 500
FRACTIONS = frozenset({"error_rate"})  # metrics that are shares: a threshold above 1 is a typo
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
}
_EXPR = re.compile(
    r"^\s*(?P<metric>[a-z0-9_]+)\s*(?:\[(?P<endpoint>[^\]]+)\])?\s*"
    r"(?P<op><=|>=|==|<|>)\s*(?P<value>.+?)\s*$"
)
_VALUE = re.compile(r"^(?:(?P<k>[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(?P<star>\*)\s*)?(?P<base>baseline)$|^(?P<num>-?[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)$")


@dataclass(frozen=True)
class Expression:
    """One parsed goal or quality threshold."""

    text: str
    metric: str
    op: str
    value: float  # the absolute number, or the factor k of k*baseline
    relative: bool = False
    endpoint: str | None = None

    def threshold(self, baseline: Mapping[str, float] | None) -> float:
        """The absolute threshold, resolving ``k*baseline`` against the baseline's metrics."""
        if not self.relative:
            return self.value
        if baseline is None or self.metric not in baseline:
            raise ExpressionError(f"{self.text!r} is relative to a baseline that has no {self.metric}")
        return self.value * float(baseline[self.metric])

    def holds(self, observed: float, baseline: Mapping[str, float] | None = None) -> bool:
        return OPERATORS[self.op](float(observed), self.threshold(baseline))

    def lower_is_better(self) -> bool:
        return self.op in ("<=", "<")


def parse_expression(text: str) -> Expression:
    """Parse one expression; a malformed one raises ExpressionError naming the bad token."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"empty expression {text!r}")
    if len(text) > MAX_EXPRESSION_CHARS:  # the grammar's regex is quadratic in runs of spaces
        raise ExpressionError(f"expression {text[:40]!r}... is {len(text)} characters; at most {MAX_EXPRESSION_CHARS}")
    m = _EXPR.match(text)
    if m is None:
        raise ExpressionError(f"bad expression {text!r}: expected 'metric op value', e.g. 'p95_ms<=200'")
    metric, op, raw = m["metric"], m["op"], m["value"]
    if metric not in METRICS:
        raise ExpressionError(
            f"bad expression {text!r}: unknown metric {metric!r} (known: {', '.join(sorted(METRICS))})"
        )
    v = _VALUE.match(raw.replace(" ", ""))
    if v is None:
        raise ExpressionError(f"bad expression {text!r}: bad value {raw!r} (a number, 'baseline' or 'k*baseline')")
    if v["base"]:
        if v["star"] and not v["k"]:
            raise ExpressionError(f"bad expression {text!r}: bad value {raw!r}")
        factor = float(v["k"] or 1.0)
        if not math.isfinite(factor):
            raise ExpressionError(f"bad expression {text!r}: {raw!r} is not a finite factor")
        return Expression(text.strip(), metric, op, factor, True, m["endpoint"])
    if metric == "responses":
        raise ExpressionError(f"bad expression {text!r}: 'responses' can only be compared with baseline")
    value = float(v["num"])
    if not math.isfinite(value) or value < 0:
        raise ExpressionError(f"bad expression {text!r}: {raw!r} is not a finite number >= 0")
    if metric in FRACTIONS and value > 1:
        raise ExpressionError(f"bad expression {text!r}: {metric} is a fraction between 0 and 1, not {raw}")
    return Expression(text.strip(), metric, op, value, False, m["endpoint"])


def parse_expressions(items: str | list[str] | tuple[str, ...] | None) -> list[Expression]:
    """Parse a list (or a comma-separated string) of expressions."""
    if items is None:
        return []
    if isinstance(items, str):
        items = [part for part in items.split(",") if part.strip()]
    return [parse_expression(item) for item in items]
