"""Property-based fuzzing of the input parsers: whatever a user writes, the only exception is our
InputError (the CLI's one line and exit code 2), never a TypeError, ValueError or RecursionError.

10,000 generated inputs in all (``max_examples`` below), in a few seconds:
    spec loader (tasks/spec_file.py + TargetSpec)   5,500: raw bytes 1,000, text 1,000,
                                                     YAML-token soup 1,500, mutated specs 2,000
    goal / quality expressions (tasks/expressions)  2,500: text 1,000, grammar-shaped 1,500
    budget (tasks/budget.py)                        2,000: text 1,000, mappings 1,000
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.budget import BUDGET_KEYS, Budget, parse_budget
from tasks.errors import InputError
from tasks.expressions import METRICS, OPERATORS, parse_expression, parse_expressions
from tasks.spec import load_spec, spec_from_raw
from tasks.spec_file import check_size


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])



GOOD: dict[str, Any] = {
    "name": "shop",
    "base_url": "http://127.0.0.1:{port}",
    "start": {"command": ["python", "app.py", "{port}"], "env": {"A": "1"}},
    "setup": [["python", "seed.py"]],
    "database": {"url": "sqlite:///{workdir}/shop.db", "allow_ddl": True},
    "load": {"endpoints": [{"name": "e", "path": "/items/{int:1:9}", "weight": 2}], "users": 4, "think_time_s": [0, 1]},
    "knobs": {"w": {"type": "int", "low": 1, "high": 4, "default": 1, "apply": {"env": "W"}},
              "c": {"type": "bool", "apply": {"http": {"path": "/admin/config", "field": "c"}}}},
    "complexity": [{"name": "c", "path": "/n/{n}"}],
    "cost": {"usd_per_worker_hour": 0.05},
    "performance_goals": ["p95_ms<=50"],
    "quality_metrics": ["error_rate<=0.01", "p99_ms<=1.1*baseline"],
    "budget_constraints": {"minutes": 3, "iterations": 2},
}
SPEC_DIR = Path(tempfile.mkdtemp(prefix="perfagents-fuzz-"))  # one folder for every example (no per-example fixture)
YAML_TOKENS = ["name:", "base_url:", "load:", "knobs:", "endpoints:", "type:", "apply:", "env:", "http:", "path:",
               "low:", "high:", "default:", " ", "  ", "\n", "\n  ", "\n- ", "- ", ":", ",", "[", "]", "{", "}", "&a ",
               "*a", "!!str ", "!!int ", "!!bool ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!!python/name:os.system ", "---\n", "...\n", "'", '"', "\\",
               "#", "? ", "|", ">", "~", "null", "true", "1", "-1", "1e999", ".inf", ".nan", "0x1f", "1_000",
               "http://127.0.0.1:{port}", "{int:1:5}", "${HOME}", "${NOPE}", "/", "\t", "\x00", "\ufeff", "é"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                    st.sampled_from(["", "/", "//x", "http://10.0.0.1/", "{port}", "${NOPE}", "int", "env", "\x00"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=4)  # small: generating deep structures costs more than validating them


def paths(spec: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested spec (list items by index)."""
    out = [prefix] if prefix else []
    if isinstance(spec, dict):
        for key, value in spec.items():
            out += paths(value, (*prefix, key))
    elif isinstance(spec, list):
        for i, value in enumerate(spec):
            out += paths(value, (*prefix, i))
    return out


GOOD_PATHS = paths(GOOD)


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    """GOOD with a few values replaced, removed, or new keys added anywhere."""
    spec = copy.deepcopy(GOOD)
    spec["spec_dir"] = "x" if draw(st.integers(0, 50)) == 0 else spec.get("spec_dir")  # a key only the model knows
    if spec["spec_dir"] is None:
        del spec["spec_dir"]
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(GOOD_PATHS))
        parent = spec
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "remove" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif action == "add" and isinstance(parent, dict):
                parent[draw(st.text(max_size=8))] = draw(values)
            else:
                parent[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the parent
            continue
    return spec


def load_text(data: bytes) -> None:
    path = SPEC_DIR / "target.yaml"
    path.write_bytes(data)
    try:
        load_spec(path)
    except InputError as exc:
        assert str(exc).strip(), "an empty error line"


def test_the_good_spec_loads() -> None:  # the mutations start from a valid spec
    load_text(yaml.safe_dump(GOOD).encode())


@fuzz(1000)
@given(st.binary(max_size=300))
def test_spec_from_random_bytes(data: bytes) -> None:
    load_text(data)


@fuzz(1000)
@given(st.text(max_size=300))
def test_spec_from_random_text(text: str) -> None:
    load_text(text.encode("utf-8", "surrogatepass"))


@fuzz(1500)
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=60))
def test_spec_from_yaml_token_soup(tokens: list[str]) -> None:
    load_text(("name: shop\n" + "".join(tokens)).encode("utf-8", "surrogatepass"))


@fuzz(2000)
@given(mutated_specs())
def test_spec_from_mutated_structures(spec: dict[str, Any]) -> None:
    """What YAML parsing returns, validated as load_spec does (without the YAML round trip's 4 ms)."""
    path = SPEC_DIR / "target.yaml"
    try:
        check_size(spec, path)
        spec_from_raw(spec, path)
    except InputError as exc:
        assert str(exc).strip(), "an empty error line"


def expression_ok(text: Any) -> None:
    try:
        parsed = parse_expression(text)
    except InputError as exc:
        assert "\n" not in str(exc).replace("\\n", ""), str(exc)
        return
    assert parsed.metric in METRICS and parsed.op in OPERATORS and math.isfinite(parsed.value)


@fuzz(1000)
@given(st.one_of(st.text(max_size=80), st.text(alphabet="p95_ms<=>.*1e-+ baseline[]", max_size=40)))
def test_expressions_from_random_text(text: str) -> None:
    expression_ok(text)
    try:
        parse_expressions(text)  # the comma-separated form
    except InputError:
        pass


@fuzz(1500)
@given(st.sampled_from(sorted(METRICS) + ["p95", "P95_MS", ""]),
       st.one_of(st.none(), st.text(max_size=10)),
       st.sampled_from([*OPERATORS, "=", "=<", "!=", "<>", ""]),
       st.one_of(st.floats(), st.integers().map(str), st.sampled_from(["baseline", "*baseline", "2*baseline", "-1*baseline",
                                                                        "1e999*baseline", "nan", "inf", "1e-999", ".5", "5."])),
       st.sampled_from(["", " ", "\t", "\n"]))
def test_expressions_shaped_like_the_grammar(metric: str, endpoint: str | None, op: str, value: Any, space: str) -> None:
    where = f"[{endpoint}]" if endpoint is not None else ""
    expression_ok(f"{space}{metric}{where}{space}{op}{space}{value}{space}")


def budget_ok(value: Any) -> None:
    try:
        budget = parse_budget(value)
    except InputError as exc:
        assert str(exc).strip()
        return
    assert isinstance(budget, Budget)
    for number in budget.model_dump().values():
        assert number is None or (math.isfinite(number) and number >= 0)


@fuzz(1000)
@given(st.one_of(st.text(max_size=60), st.lists(st.tuples(st.sampled_from([*BUDGET_KEYS, "hours", ""]), st.text(max_size=8)),
                                                 max_size=4).map(lambda kv: ",".join(f"{k}={v}" for k, v in kv))))
def test_budget_from_text(text: str) -> None:
    budget_ok(text)


@fuzz(1000)
@given(st.one_of(st.dictionaries(st.sampled_from([*BUDGET_KEYS, "hours"]), scalars, max_size=4), values))
def test_budget_from_mappings_and_anything(value: Any) -> None:
    budget_ok(value)


@pytest.fixture(autouse=True, scope="module")
def _cleanup_spec_dir():
    yield
    for path in SPEC_DIR.iterdir():
        path.unlink()
    SPEC_DIR.rmdir()
