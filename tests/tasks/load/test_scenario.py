"""The generated FastHttpUser scenario: placeholders parsed, user text kept as data."""

from __future__ import annotations

import ast
import json

import pytest

from tasks.errors import SpecError
from tasks.load.scenario import USER_CLASS, parse_path, scenario_data, write_scenario
from tasks.spec import EndpointSpec


def endpoints_from_source(source: str) -> list[dict]:
    """Read ENDPOINTS back from the generated file without executing it (no locust import here)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ENDPOINTS":
            call = node.value
            assert isinstance(call, ast.Call) and ast.unparse(call.func) == "json.loads"
            return json.loads(ast.literal_eval(call.args[0]))
    raise AssertionError("no ENDPOINTS in the generated file")


def test_parse_path_splits_placeholders():
    assert parse_path("/api/products?page={int:1:50}") == ["/api/products?page=", [1, 50]]
    assert parse_path("/a/{int:-3:3}/b/{int:7:7}") == ["/a/", [-3, 3], "/b/", [7, 7]]
    assert parse_path("/plain") == ["/plain"]
    assert parse_path("/{int:1:2}") == ["/", [1, 2]]
    assert parse_path("/q?x={literal}") == ["/q?x={literal}"]  # not an int placeholder: kept as text


@pytest.mark.parametrize("path", ["/p/{int:1}", "/p/{int:a:b}", "/p/{int:1:2:3}", "/p/{int:9:1}"])
def test_bad_placeholder_is_a_spec_error(path):
    with pytest.raises(SpecError, match="placeholder"):
        parse_path(path)


def test_path_must_start_with_slash():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be a path on base_url"):  # refused when the spec is read
        EndpointSpec(name="x", path="api")


def test_empty_endpoints_refused():
    with pytest.raises(SpecError, match="empty"):
        scenario_data([])


def test_generated_file_keeps_hostile_text_as_data(tmp_path):
    hostile = 'x"""\nimport os; os.system("echo pwned")\n#'
    endpoints = [
        EndpointSpec(name=hostile, path="/items/{int:1:3}", weight=3),
        EndpointSpec.model_validate({"name": "echo", "path": "/echo", "method": "POST",
                                     "json": {"k": hostile, "n": [1, 2.5, None, True]}}),
    ]
    path = write_scenario(endpoints, tmp_path / "scenario.py")
    source = path.read_text()
    tree = ast.parse(source)

    assert "pwned" not in "".join(ast.unparse(node) for node in tree.body if not isinstance(node, ast.Assign))
    top_level = [type(node).__name__ for node in tree.body]
    assert top_level.count("ClassDef") == 1 and top_level.count("Expr") == 1  # the docstring only
    assert [node.name for node in tree.body if isinstance(node, ast.ClassDef)] == [USER_CLASS]
    data = endpoints_from_source(source)
    assert data[0] == {"name": hostile, "method": "GET", "weight": 3, "parts": ["/items/", [1, 3]], "json": None}
    assert data[1]["json"] == {"k": hostile, "n": [1, 2.5, None, True]}
    assert data[1]["method"] == "POST"


def test_unserialisable_body_is_a_spec_error(tmp_path):
    endpoint = EndpointSpec.model_validate({"name": "e", "path": "/e", "json": {"x": float("nan")}})
    with pytest.raises(SpecError, match="JSON"):
        write_scenario([endpoint], tmp_path / "scenario.py")
