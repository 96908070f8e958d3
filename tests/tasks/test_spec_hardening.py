"""Malformed input is refused when the spec, goals or budget are read: one line, our error type."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.budget import parse_budget
from tasks.errors import InputError, SpecError
from tasks.expressions import parse_expression
from tasks.spec import load_spec

BASE = {
    "name": "shop",
    "base_url": "http://127.0.0.1:{port}",
    "start": {"command": ["python", "-m", "http.server", "{port}"]},
    "load": {"endpoints": [{"name": "home", "path": "/"}], "duration_s": 5},
}
KNOB = {"type": "int", "low": 1, "high": 4, "default": 2, "apply": {"env": "W"}}


def write(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump({**BASE, **overrides}))
    return path


def refused(path: Path, needle: str, error: type[Exception] = SpecError) -> None:
    with pytest.raises(error) as err:
        load_spec(path)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"knobs": {"w": {**KNOB, "low": 5}}}, "low 5 is above high 4"),
    ({"knobs": {"w": {**KNOB, "default": 9}}}, "outside [1, 4]"),
    ({"knobs": {"w": {"type": "float", "low": 0.5, "high": 0.1, "default": 0.2, "apply": {"env": "F"}}}}, "above high"),
    ({"knobs": {"w": {"type": "choice", "choices": ["a", "b"], "default": "c", "apply": {"env": "C"}}}}, "not one of"),
    ({"knobs": {"w": {**KNOB, "apply": {"env": "A=B"}}}}, "knobs.w"),
    ({"knobs": {"w": {"type": "bool", "apply": {"http": {"path": "@evil.example/x", "field": "f"}}}}}, "knobs.w"),
    ({"knobs": {"w": {"type": "bool", "apply": {"http": {"path": "//evil.example/x", "field": "f"}}}}}, "knobs.w"),
    ({"load": {"endpoints": [{"name": "x", "path": "http://evil.example/"}]}}, "must be a path on base_url"),
    ({"load": {"endpoints": [{"name": "x", "path": "/p/{int:9:1}"}]}}, "bad placeholder"),
    ({"load": {"endpoints": [{"name": "x", "path": "/p/{int:1}"}]}}, "bad placeholder"),
    ({"load": {"endpoints": [{"name": "x", "path": "/"}], "spawn_rate": float("inf")}}, "spawn_rate"),
    ({"load": {"endpoints": [{"name": "x", "path": "/"}], "think_time_s": [0, float("inf")]}}, "think_time_s"),
    ({"base_url": "http://127.0.0.1:port/"}, "base_url"),
    ({"base_url": "http://127.0.0.1:{port}\\@evil.example/"}, "base_url"),
    ({"base_url": "http://user@127.0.0.1:{port}/"}, "no user info"),
    ({"database": {"url": "postgresql://u@10.1.2.3:5432/db"}}, "not loopback"),
    ({"database": {"url": "postgresql://u@127.0.0.1:5432/db?host=db.prod.example.com"}}, "db.prod.example.com"),
])
def test_malformed_specs_are_refused_on_reading(tmp_path: Path, overrides: dict, needle: str) -> None:
    refused(write(tmp_path, **overrides), needle, InputError)


def test_a_spec_that_is_not_utf8_nested_too_deep_or_an_alias_bomb_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    refused(path, "not UTF-8")
    path.write_text("a: " + "[" * 5000 + "]" * 5000)
    refused(path, "target.yaml")
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 8):
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [{','.join(['*' + chr(96 + i)] * 9)}]")
    path.write_text("\n".join(bomb) + "\n")
    refused(path, "aliases are expanded")


def test_a_remote_database_in_the_spec_is_allowed_with_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, database={"url": "postgresql://u@10.1.2.3:5432/db"})
    assert load_spec(path, allow_remote=True).database.url.endswith("/db")


@pytest.mark.parametrize("text", ["p95_ms<=1e999", "p95_ms<=-5", "error_rate<=5", "rps>=inf", "p99_ms<=1e999*baseline"])
def test_goals_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_expression(text)


@pytest.mark.parametrize("text", ["minutes=inf", "minutes=1e309", "minutes=nan", "usd=-1", "iterations=1.5"])
def test_budgets_that_are_not_finite_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_budget(text)


@pytest.mark.parametrize(("text", "secret"), [
    ("POSTGRESQL://app:s3cret@127.0.0.1/db", "s3cret"),
    ("postgresql://app:p@ss@127.0.0.1:5432/db", "p@ss"),
    ("postgresql://app@127.0.0.1/db?sslmode=disable&password=s3cret", "s3cret"),
    ("host=127.0.0.1 password=s3cret dbname=api", "s3cret"),
])
def test_passwords_in_every_form_are_redacted(text: str, secret: str) -> None:
    from tasks.db.redact import redact, redact_url

    assert secret not in redact_url(text) and "***" in redact_url(text)
    env = redact({"start": {"env": {"PGPASSWORD": secret, "API_TOKEN": secret, "API_DB": text, "WORKERS": "2"}}})
    assert secret not in str(env) and env["start"]["env"]["WORKERS"] == "2"
