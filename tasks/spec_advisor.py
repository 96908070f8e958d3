"""The advisor's sections of the target spec: ``llm:`` (which model server, which models, at
what price, within how many prompt tokens) and ``code:`` (where patches may apply).

Both are optional; without ``llm:`` the toolkit never calls a model and touches no network.
The model server must be on loopback unless the section says ``allow_remote: true`` (or the
CLI's ``--allow-remote`` is given): the prompt carries the target's source code. A remote
server must use https, since the API key travels with every request.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.db.url import is_loopback_host
from tasks.errors import SpecError, UnsafeTargetError

MIN_CONTEXT_TOKENS = 512  # the static instructions and a finding's evidence need about this much
MAX_CONTEXT_TOKENS = 200_000
MAX_OUTPUT_TOKENS = 32_000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # every number in a spec is finite


class ModelPrice(_Section):
    """One model the server offers, with its price in USD per million tokens."""

    name: str = Field(min_length=1, max_length=200)
    usd_per_1m_input: float = Field(ge=0, le=10_000)
    usd_per_1m_output: float = Field(ge=0, le=10_000)

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.usd_per_1m_input + tokens_out * self.usd_per_1m_output) / 1e6


class LlmSpec(_Section):
    """``llm:``: an OpenAI-compatible chat-completions endpoint and the models to try, cheapest first."""

    base_url: str
    api_key_env: str | None = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    models: list[ModelPrice] = Field(min_length=1)
    max_context_tokens: int = Field(default=4000, ge=MIN_CONTEXT_TOKENS, le=MAX_CONTEXT_TOKENS)
    max_output_tokens: int = Field(default=2000, ge=64, le=MAX_OUTPUT_TOKENS)  # each call's answer limit
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    max_retries: int = Field(default=2, ge=0, le=10)  # on 429, 5xx and lost connections (the SDK's)
    allow_remote: bool = False  # may the prompt (the target's source) leave the machine?

    @field_validator("models")
    @classmethod
    def _cheapest_first(cls, models: list[ModelPrice]) -> list[ModelPrice]:
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be distinct: {names}")
        for before, after in zip(models, models[1:], strict=False):
            if (after.usd_per_1m_input < before.usd_per_1m_input
                    and after.usd_per_1m_output < before.usd_per_1m_output):
                raise ValueError(f"models are tried cheapest first: {after.name!r} is cheaper than "
                                 f"{before.name!r}, list it before")
        return models

    def model(self, name: str) -> ModelPrice:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


class CodeSpec(_Section):
    """``code:``: the git work tree that holds the target's source, relative to the spec file."""

    source_dir: str = "."
    allow_changes: bool = False  # without it the advisor only suggests

    @model_validator(mode="after")
    def _relative(self) -> CodeSpec:
        if not self.source_dir.strip():
            raise ValueError("source_dir must name a folder")
        return self


def check_llm_host(llm: LlmSpec, *, allow_remote: bool = False) -> None:
    """Loopback unless remote is allowed; a remote server only over https. (The URL's shape,
    http(s) without user info, is checked as base_url's, by tasks.spec.check_loopback.)"""
    parts = urlsplit(llm.base_url)
    if is_loopback_host(parts.hostname or ""):
        return
    if not (allow_remote or llm.allow_remote):
        raise UnsafeTargetError(f"llm.base_url host {parts.hostname!r} is not loopback: the prompt carries "
                                "the target's source; set llm.allow_remote: true to send it there")
    if parts.scheme != "https":
        raise UnsafeTargetError(f"llm.base_url {llm.base_url!r}: a remote model server needs https "
                                "(the API key travels with every request)")


def check_source_dir(code: CodeSpec, spec_dir: Path, spec_path: Path) -> Path:
    """The resolved source folder; a SpecError when it is not a folder."""
    folder = (spec_dir / code.source_dir).resolve()
    if not folder.is_dir():
        raise SpecError(f"{spec_path}: code.source_dir {code.source_dir!r} is not a folder ({folder})")
    return folder
