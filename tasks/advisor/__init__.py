"""The advisor: asks a model (any OpenAI-compatible server, the spec's ``llm:``) for a patch
that fixes a code-level finding, inside a token and USD budget. Opt-in: nothing here runs, and
no network is touched, without an ``llm:`` section.

    client.py   the chat-completions client (openai SDK): timeouts, retries, the provider's usage
"""

from __future__ import annotations

from tasks.advisor.client import Answer, ChatClient, Usage

__all__ = ["Answer", "ChatClient", "Usage"]
