from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tasks.errors import InputError
from tasks.request import RunRequest, build_request, resolve_request

SPEC = {
    "name": "shop",
    "base_url": "http://127.0.0.1:{port}",
    "start": {"command": ["python", "-m", "http.server", "{port}"]},
    "load": {"endpoints": [{"name": "home", "path": "/"}], "duration_s": 5},
    "performance_goals": ["p95_ms<=50"],
    "quality_metrics": ["error_rate<=0.02"],
    "budget_constraints": {"minutes": 4},
    "optimization_scope": "comprehensive",
}


def spec_file(tmp_path: Path) -> str:
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return str(path)


def test_the_request_round_trips_through_json() -> None:
    request = RunRequest(target="ecommerce", performance_goals=["p95_ms<=200"], optimization_scope="quick-win",
                         start_from_kept=True, json_path="out.json")
    assert RunRequest.model_validate(json.loads(request.model_dump_json())) == request


def test_an_empty_request_takes_the_spec_and_the_flows_defaults(tmp_path: Path) -> None:
    resolved = resolve_request(RunRequest(), target=spec_file(tmp_path), start_from_kept=True)
    assert resolved.spec.name == "shop" and resolved.scope == "comprehensive"
    assert [g.text for g in resolved.goals] == ["p95_ms<=50"] and resolved.max_error_rate == 0.02
    assert resolved.budget.minutes == 4 and resolved.start_from_kept is True
    assert resolved.json_path is None and resolved.store.name == "perfagents.duckdb"


def test_the_request_overrides_the_spec_and_the_flow(tmp_path: Path) -> None:
    params = RunRequest(target=spec_file(tmp_path), performance_goals=["rps>=10"], optimization_scope="quick-win",
                        budget_constraints="iterations=2", quality_metrics=[], start_from_kept=False,
                        store=str(tmp_path / "s.duckdb"), json_path=str(tmp_path / "r.json"))
    resolved = resolve_request(params, target="ecommerce", start_from_kept=True)
    assert resolved.spec.name == "shop" and resolved.scope == "quick-win"
    assert [g.text for g in resolved.goals] == ["rps>=10"] and resolved.quality == []
    assert resolved.budget.iterations == 2 and resolved.budget.minutes is None
    assert resolved.start_from_kept is False
    assert (resolved.store, resolved.json_path) == (tmp_path / "s.duckdb", tmp_path / "r.json")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"optimization_scope": "everything"}, "unknown scope 'everything'"),
        ({"allow_remote": "maybe"}, "allow_remote"),
        ({"budget": "minutes=3"}, "budget: unknown key"),
    ],
)
def test_a_bad_request_is_one_input_error(fields: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        build_request(target="ecommerce", **fields)


def test_bad_expressions_and_budget_are_refused_when_resolved(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="minutes"):
        resolve_request(RunRequest(target=spec_file(tmp_path), budget_constraints="minutes=soon"))
    with pytest.raises(InputError, match="'latency'"):
        resolve_request(RunRequest(target=spec_file(tmp_path), quality_metrics=["latency<=3"]))


def test_a_password_never_reaches_the_flow_parameters(monkeypatch) -> None:
    from flows.cli import password_to_env
    from tasks.errors import InputError
    from tasks.request import build_request

    monkeypatch.setenv("PGPASSWORD", "x")  # recorded, so the value set below is undone too
    monkeypatch.delenv("PGPASSWORD")
    url = password_to_env("postgresql://app:s%40cret@127.0.0.1:5432/api?sslmode=disable")
    assert url == "postgresql://app@127.0.0.1:5432/api?sslmode=disable"
    assert os.environ["PGPASSWORD"] == "s@cret"
    assert "cret" not in build_request(database_url=url).model_dump_json()
    with pytest.raises(InputError, match="PGPASSWORD"):  # the same URL typed into a deployment's form
        build_request(database_url="postgresql://app:s3cret@127.0.0.1:5432/api")
    with pytest.raises(InputError, match="another"):
        password_to_env("postgresql://app:other@127.0.0.1:5432/api")
    assert password_to_env("postgresql://app@127.0.0.1:5432/api") == "postgresql://app@127.0.0.1:5432/api"


def test_without_an_error_rate_threshold_the_gate_still_rejects_mostly_failing_windows(tmp_path: Path) -> None:
    from tasks.request import DEFAULT_MAX_ERROR_RATE

    resolved = resolve_request(RunRequest(quality_metrics=["p99_ms<=1.1*baseline"]), target=spec_file(tmp_path))
    assert resolved.max_error_rate == DEFAULT_MAX_ERROR_RATE == 0.5  # was None: a window of 500s was "valid"
