"""The real openai-SDK client against the local replay server: usage, retries, errors, the key."""

from __future__ import annotations

import logging

import pytest

from tasks.advisor.client import NO_KEY, ChatClient
from tasks.errors import LlmError
from tasks.spec_advisor import LlmSpec

HELLO = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


def spec(url: str, **extra) -> LlmSpec:
    return LlmSpec(base_url=url, api_key_env="ADVISOR_TEST_KEY", timeout_s=5, max_retries=2,
                   models=[{"name": "small-model", "usd_per_1m_input": 0.25, "usd_per_1m_output": 2.0}], **extra)


def test_answer_text_and_the_providers_usage(replay) -> None:
    answer = ChatClient(spec(replay.url)).complete("small-model", HELLO, max_tokens=50)
    assert answer.text == "Hello." and answer.model == "small-model" and answer.finish_reason == "stop"
    reported = replay.requests[-1]["usage"]
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == \
        (reported["prompt_tokens"], reported["completion_tokens"])
    assert answer.usage.prompt_tokens == replay.count_messages(HELLO) > 10
    body = replay.requests[-1]["body"]
    assert body["max_tokens"] == 50 and body["temperature"] == 0 and body["messages"] == HELLO


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retried_once_then_answered(replay, status: int) -> None:
    replay.fail_next(status, times=1)
    answer = ChatClient(spec(replay.url)).complete("small-model", HELLO, max_tokens=50)
    assert answer.text == "Hello."
    assert [r["status"] for r in replay.requests] == [status, 200]


def test_gives_up_after_max_retries(replay) -> None:
    replay.fail_next(500, times=10)
    with pytest.raises(LlmError, match="answered 500"):
        ChatClient(spec(replay.url)).complete("small-model", HELLO, max_tokens=50)
    assert len(replay.requests) == 3  # the call and its 2 retries


def test_a_client_error_is_not_retried(replay) -> None:
    with pytest.raises(LlmError, match="answered 400.*no recorded answer"):
        ChatClient(spec(replay.url)).complete("small-model", [{"role": "user", "content": "?"}], max_tokens=50)
    assert len(replay.requests) == 1


def test_unreachable_server_is_one_llm_error() -> None:
    client = ChatClient(LlmSpec(base_url="http://127.0.0.1:9/v1", timeout_s=2, max_retries=0,
                                models=[{"name": "m", "usd_per_1m_input": 0, "usd_per_1m_output": 0}]))
    with pytest.raises(LlmError, match="failed for 'm'"):
        client.complete("m", HELLO, max_tokens=5)


def test_the_key_is_read_at_each_request_and_never_kept(replay, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = ChatClient(spec(replay.url))
    monkeypatch.delenv("ADVISOR_TEST_KEY", raising=False)
    client.complete("small-model", HELLO, max_tokens=5)
    assert replay.requests[-1]["headers"]["authorization"] == f"Bearer {NO_KEY}"
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("ADVISOR_TEST_KEY", secret)
    client.complete("small-model", HELLO, max_tokens=5)
    assert replay.requests[-1]["headers"]["authorization"] == f"Bearer {secret}"
    assert secret not in repr(client) and secret not in str(vars(client).get("base_url"))
    assert secret not in caplog.text
