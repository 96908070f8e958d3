"""The ``llm:`` and ``code:`` sections of the target spec: optional, validated, loopback by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.errors import SpecError, UnsafeTargetError
from tasks.spec import load_spec

BASE = {
    "name": "shop",
    "base_url": "http://127.0.0.1:{port}",
    "load": {"endpoints": [{"name": "home", "path": "/"}], "duration_s": 5},
}
LLM = {
    "base_url": "http://127.0.0.1:8000/v1",
    "api_key_env": "OPENAI_API_KEY",
    "models": [{"name": "small-model", "usd_per_1m_input": 0.25, "usd_per_1m_output": 2.0},
               {"name": "large-model", "usd_per_1m_input": 3.0, "usd_per_1m_output": 15.0}],
    "max_context_tokens": 4000,
}


def write(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump({**BASE, **overrides}))
    return path


def test_without_llm_nothing_changes(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path))
    assert spec.llm is None and spec.code is None
    assert "llm" not in {k for k, v in spec.model_dump().items() if v is not None}


def test_the_contract_example_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, llm=LLM, code={"source_dir": ".", "allow_changes": True}))
    assert spec.llm is not None and spec.code is not None
    assert [m.name for m in spec.llm.models] == ["small-model", "large-model"]
    assert spec.llm.max_context_tokens == 4000 and spec.code.allow_changes
    assert spec.llm.model("large-model").usd(1_000_000, 1_000_000) == pytest.approx(18.0)


@pytest.mark.parametrize(
    ("llm", "needle"),
    [
        ({**LLM, "models": []}, "llm.models"),
        ({**LLM, "max_context_tokens": 10}, "llm.max_context_tokens"),
        ({**LLM, "max_context_tokens": 10**9}, "llm.max_context_tokens"),
        ({**LLM, "models": [{"name": "m", "usd_per_1m_input": float("nan"), "usd_per_1m_output": 1}]}, "usd_per_1m_input"),
        ({**LLM, "models": [{"name": "m", "usd_per_1m_input": -1, "usd_per_1m_output": 1}]}, "usd_per_1m_input"),
        ({**LLM, "models": [LLM["models"][1], LLM["models"][0]]}, "cheapest first"),
        ({**LLM, "models": [LLM["models"][0], LLM["models"][0]]}, "distinct"),
        ({**LLM, "api_key_env": "sk-not-a-name!"}, "api_key_env"),
        ({**LLM, "base_url": "ftp://127.0.0.1/v1"}, "llm.base_url"),
        ({**LLM, "base_url": "http://user:pw@127.0.0.1/v1"}, "llm.base_url"),
        ({**LLM, "temperature": 0.2}, "unknown key"),
    ],
)
def test_bad_llm_section_is_one_line(tmp_path: Path, llm: dict, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, llm=llm))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_remote_model_server_needs_consent_and_https(tmp_path: Path) -> None:
    remote = {**LLM, "base_url": "https://api.example.com/v1"}
    with pytest.raises(UnsafeTargetError, match="not loopback"):
        load_spec(write(tmp_path, llm=remote))
    assert load_spec(write(tmp_path, llm={**remote, "allow_remote": True})).llm is not None
    assert load_spec(write(tmp_path, llm=remote), allow_remote=True).llm is not None
    with pytest.raises(UnsafeTargetError, match="https"):
        load_spec(write(tmp_path, llm={**remote, "base_url": "http://api.example.com/v1", "allow_remote": True}))


def test_loopback_forms_are_local(tmp_path: Path) -> None:
    for url in ("http://localhost:8000/v1", "http://[::1]:8000/v1", "http://127.0.0.2:9/v1"):
        assert load_spec(write(tmp_path, llm={**LLM, "base_url": url})).llm is not None


def test_source_dir_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    assert load_spec(write(tmp_path, code={"source_dir": "src"})).code is not None
    with pytest.raises(SpecError, match="code.source_dir"):
        load_spec(write(tmp_path, code={"source_dir": "missing"}))
