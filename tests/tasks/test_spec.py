from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.errors import SpecError, UnsafeTargetError
from tasks.spec import fill, load_spec

BASE = {
    "name": "shop",
    "base_url": "http://127.0.0.1:{port}",
    "start": {"command": ["python", "-m", "http.server", "{port}"]},
    "load": {"endpoints": [{"name": "home", "path": "/"}], "duration_s": 5},
    "knobs": {"workers": {"type": "int", "low": 1, "high": 2, "default": 1, "apply": {"env": "W"}}},
    "performance_goals": ["p95_ms<=50"],
}


def write(tmp_path: Path, **overrides) -> Path:
    spec = {**BASE, **overrides}
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_valid_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path))
    assert spec.name == "shop" and spec.knobs["workers"].default == 1
    assert spec.default_config() == {"workers": 1}
    assert spec.spec_dir == tmp_path


def test_reference_target_by_name() -> None:
    assert load_spec("ecommerce").name == "ecommerce"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"performance_goals": ["p95_ms<=fast"]}, "'fast'"),
        ({"knobs": {"w": {"type": "integer", "default": 1, "apply": {"env": "W"}}}}, "unknown type 'integer'"),
        ({"load": {"locustfile": "missing.py"}}, "missing.py"),
        ({"name": "Bad Name"}, "name"),
        ({"surprise": 1}, "unknown key"),
        ({"budget_constraints": "minutes=soon"}, "minutes"),
    ],
)
def test_bad_spec_is_one_line(tmp_path: Path, overrides: dict, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, **overrides))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_remote_base_url_needs_flag(tmp_path: Path) -> None:
    path = write(tmp_path, base_url="http://example.com:8080", start=None)
    with pytest.raises(UnsafeTargetError):
        load_spec(path)
    assert load_spec(path, allow_remote=True).base_url.startswith("http://example.com")


def test_fill_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGUSER", "bob")
    assert fill("postgresql://${PGUSER}@127.0.0.1:{port}/{workdir}", port=5, workdir="w") == "postgresql://bob@127.0.0.1:5/w"
    with pytest.raises(SpecError):
        fill("${NOPE_NOT_SET_X}")


def test_passwords_are_redacted_everywhere() -> None:
    from tasks.db.redact import redact

    nested = {"url": "postgresql://app:s3cret@127.0.0.1:5432/db", "cmd": ["seed", "--db", "postgresql://a:b@h/d"]}
    assert "s3cret" not in str(redact(nested)) and ":b@" not in str(redact(nested))
    assert redact(nested)["url"] == "postgresql://app:***@127.0.0.1:5432/db"


@pytest.mark.parametrize("url", ["mysql://x/y", "postgresql://127.0.0.1", "sqlite://", "postgresql://u@10.0.0.9/db"])
def test_bad_database_urls(url: str) -> None:
    from tasks.db.url import check_database_url
    from tasks.errors import InputError

    with pytest.raises(InputError):
        check_database_url(url)


def test_db_override_replaces_every_use(tmp_path: Path) -> None:
    spec = load_spec("enterprise-api", database_url="postgresql://postgres@127.0.0.1:5544/api")
    assert spec.database.url == "postgresql://postgres@127.0.0.1:5544/api"
    assert spec.start.env["API_DB"] == spec.database.url and spec.database.url in spec.setup[0]


@pytest.mark.parametrize("processes", [1, 2, 64, "auto"])
def test_load_processes_accepted(tmp_path: Path, processes: object) -> None:
    load = {**BASE["load"], "processes": processes}
    assert load_spec(write(tmp_path, load=load)).load.processes == processes


def test_load_processes_default_is_one_process(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path)).load.processes == 1


@pytest.mark.parametrize("processes", [0, -1, 65, 1.5, 2.0, True, "two", "2", None, [2]])
def test_bad_load_processes_is_one_line(tmp_path: Path, processes: object) -> None:
    load = {**BASE["load"], "processes": processes}
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, load=load))
    assert "load.processes" in str(err.value) and "auto" in str(err.value) and "\n" not in str(err.value)
