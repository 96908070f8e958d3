"""The chat-completions client: the ``openai`` SDK pointed at the spec's ``llm.base_url``.

Any OpenAI-compatible server works (OpenAI, vLLM, Ollama, llama.cpp's server, LiteLLM).
The SDK retries 429, 5xx and lost connections ``llm.max_retries`` times with backoff (it
honours ``Retry-After``); each attempt is bounded by ``llm.timeout_s``. The API key is read
from the environment variable ``llm.api_key_env`` names, at each request, by a callable handed
to the SDK: this module keeps no copy, and no error message, repr or log line carries it.

Token counts are the provider's own (``usage`` in each response), never estimates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tasks.errors import LlmError
from tasks.spec_advisor import LlmSpec

NO_KEY = "no-key"  # sent when the key's variable is unset: local servers ignore it
TEMPERATURE = 0.0  # the same prompt should get the same patch (and the cache relies on it)


@dataclass(frozen=True)
class Usage:
    """The provider's token counts for one call."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Answer:
    """One chat completion: the text, the model that answered, the provider's ``usage``
    (None when the server reported none) and why it stopped (``stop``, ``length`` ...)."""

    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None = None


class ChatClient:
    """One model server. ``complete`` sends one chat completion and returns its Answer."""

    def __init__(self, llm: LlmSpec) -> None:
        from openai import OpenAI  # imported only when an llm: section is used

        self.base_url = llm.base_url
        self._key_env = llm.api_key_env
        self._sdk = OpenAI(base_url=llm.base_url, api_key=self._read_key, timeout=llm.timeout_s,
                           max_retries=llm.max_retries)

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, api_key_env={self._key_env!r})"

    def _read_key(self) -> str:
        return (os.environ.get(self._key_env) if self._key_env else None) or NO_KEY

    def complete(self, model: str, messages: list[dict[str, str]], *, max_tokens: int) -> Answer:
        """One call (retried by the SDK on 429/5xx/connection errors); LlmError when it fails."""
        import openai

        try:
            response = self._sdk.chat.completions.create(
                model=model, messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens, temperature=TEMPERATURE)
        except openai.APIStatusError as exc:
            raise LlmError(f"model server {self.base_url} answered {exc.status_code} for {model!r}: "
                           f"{self._redact(exc.message)}") from exc
        except openai.APITimeoutError as exc:
            raise LlmError(f"model server {self.base_url} timed out for {model!r}") from exc
        except openai.APIError as exc:  # connection refused, bad JSON ...
            raise LlmError(f"model server {self.base_url} failed for {model!r}: "
                           f"{type(exc).__name__}: {self._redact(str(exc))}") from exc
        return _answer(response, model)

    def _redact(self, text: str, limit: int = 200) -> str:
        """A server's error text on one line, shortened, with the key (if it echoed it) masked."""
        line = " ".join(str(text).split())
        key = self._read_key()
        if key != NO_KEY:
            line = line.replace(key, "***")
        return line if len(line) <= limit else line[: limit - 3] + "..."


def _answer(response: Any, model: str) -> Answer:
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise LlmError(f"model server answered no choices for {model!r}")
    usage = getattr(response, "usage", None)
    counted = None
    if usage is not None and usage.prompt_tokens is not None:
        counted = Usage(int(usage.prompt_tokens), int(usage.completion_tokens or 0))
    return Answer(text=choices[0].message.content or "", model=getattr(response, "model", None) or model,
                  usage=counted, finish_reason=choices[0].finish_reason)
