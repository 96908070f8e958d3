"""An OTLP/HTTP trace receiver on loopback with a bounded in-memory span buffer.

``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (protobuf or OTLP JSON, gzip or
not) is answered 200 with an empty ``ExportTraceServiceResponse``; the spans go to a buffer
that keeps the newest ``max_spans`` (older ones are dropped and counted). A window takes the
spans that started in it with ``drain(since, until)``. One thread serves each connection
(the SDK's exporter keeps one alive); ``stop`` closes the listening socket and every open
connection and joins the threads within its timeout.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks.tracing.otlp import (
    MAX_BODY_BYTES,
    PayloadError,
    decompress,
    parse_request,
    proto_modules,
    response_body,
    span_records,
)
from tasks.tracing.spans import SpanRecord

HOST = "127.0.0.1"
TRACES_PATH = "/v1/traces"
MAX_SPANS = 100_000  # buffered spans; past this the oldest are dropped
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.1  # how fast serve_forever notices stop()
CONNECTION_IDLE_S = 30.0  # an idle keep-alive connection is closed after this


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() joins the connection threads itself, with a timeout
    owner: SpanReceiver

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's would also resolve the host's FQDN
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="otlp-connection", daemon=True)
        self.owner._track(request, thread)  # before it runs: stop() must see every connection
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._untrack(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OTLP exporter expects
    timeout = CONNECTION_IDLE_S
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the http.server naming
        if self.path.split("?", 1)[0] != TRACES_PATH:
            self._answer(404, b"not found", "text/plain", close=True)  # its body is left unread
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._answer(411, b"Content-Length required", "text/plain", close=True)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._answer(400, b"bad Content-Length", "text/plain", close=True)
            return
        if length > MAX_BODY_BYTES:
            self._answer(413, b"body too large", "text/plain", close=True)
            return
        body = self.rfile.read(length)
        content_type = self.headers.get_content_type()
        try:
            message = parse_request(decompress(body, self.headers.get("Content-Encoding")), content_type)
            spans = span_records(message)
        except PayloadError as exc:
            self.server.owner._reject()
            self._answer(exc.status, str(exc).encode(), "text/plain")
            return
        except Exception as exc:  # noqa: BLE001 - a body we cannot read must not kill the connection
            self.server.owner._reject()
            self._answer(500, f"{type(exc).__name__}: {exc}".encode(), "text/plain")
            return
        self.server.owner._add(spans)
        self._answer(200, response_body(content_type), content_type)

    def _answer(self, status: int, body: bytes, content_type: str, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
        pass


class SpanReceiver:
    """``with SpanReceiver() as r:`` serves on ``r.endpoint`` until the block ends."""

    def __init__(self, *, host: str = HOST, port: int = 0, max_spans: int = MAX_SPANS) -> None:
        proto_modules()  # fail here, not on the first request, when opentelemetry-proto is missing
        self._server = _Server((host, port), _Handler)
        self._server.owner = self
        self.host, self.port = host, int(self._server.server_address[1])
        self.max_spans = max_spans
        self._lock = threading.Lock()
        self._spans: deque[SpanRecord] = deque(maxlen=max_spans)
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._thread: threading.Thread | None = None
        self.received = self.dropped = self.rejected = self.batches = 0
        self._last_batch = 0.0  # time.monotonic() of the last export with spans

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}{TRACES_PATH}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout_s: float = START_TIMEOUT_S) -> SpanReceiver:
        if self._thread is not None:
            return self
        started = threading.Event()

        def serve() -> None:
            started.set()
            self._server.serve_forever(poll_interval=POLL_INTERVAL_S)

        self._thread = threading.Thread(target=serve, name=f"otlp-receiver-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s):
            self.stop()
            raise TimeoutError(f"OTLP receiver on port {self.port} did not start within {timeout_s:g} s")
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop serving, close the socket and every connection; idempotent."""
        deadline = time.monotonic() + timeout_s
        if self._thread is not None and self._thread.is_alive():
            self._server.shutdown()  # returns once serve_forever has left its loop
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
        with self._lock:
            connections = dict(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its thread
        for thread in connections.values():
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> SpanReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- spans -------------------------------------------------------------------------------
    def drain(self, since: float | None = None, until: float | None = None,
              service: str | None = None) -> list[SpanRecord]:
        """Take the spans that started in ``[since, until)``, oldest first.

        Spans of ``service`` (all services when None) that started before ``since`` are
        discarded too (they belong to no window); later ones and other services' stay.
        """
        lo = float("-inf") if since is None else since
        hi = float("inf") if until is None else until
        taken: list[SpanRecord] = []
        with self._lock:
            kept: deque[SpanRecord] = deque(maxlen=self.max_spans)
            for span in self._spans:
                mine = service is None or span["attributes"].get("service.name") == service
                if not mine or span["start_ts"] >= hi:
                    kept.append(span)
                elif span["start_ts"] >= lo:
                    taken.append(span)
            self._spans = kept
        taken.sort(key=lambda s: s["start_ts"])
        return taken

    def wait_quiet(self, quiet_s: float, timeout_s: float) -> bool:
        """Wait until no export arrived for ``quiet_s`` (True) or ``timeout_s`` passed (False)."""
        begun = time.monotonic()
        while True:
            now = time.monotonic()
            with self._lock:
                last = max(self._last_batch, begun)
            if now - last >= quiet_s:
                return True
            if now - begun >= timeout_s:
                return False
            time.sleep(min(0.05, quiet_s / 4))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"endpoint": self.endpoint, "received": self.received, "dropped": self.dropped,
                    "rejected": self.rejected, "batches": self.batches, "buffered": len(self._spans),
                    "max_spans": self.max_spans}

    # -- called by the server threads --------------------------------------------------------
    def _add(self, spans: list[SpanRecord]) -> None:
        with self._lock:
            overflow = len(self._spans) + len(spans) - self.max_spans
            self.dropped += max(0, overflow)
            self._spans.extend(spans)
            self.received += len(spans)
            self.batches += 1
            if spans:
                self._last_batch = time.monotonic()

    def _reject(self) -> None:
        with self._lock:
            self.rejected += 1

    def _track(self, sock: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            self._connections[sock] = thread

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)
