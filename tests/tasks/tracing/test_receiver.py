"""The OTLP receiver fed by the real OpenTelemetry SDK and its real OTLP/HTTP exporter."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from google.protobuf import json_format  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: E402

from tasks.tracing import SpanReceiver  # noqa: E402
from tasks.tracing.receiver import CONNECTION_IDLE_S  # noqa: E402

NS = 1_000_000_000


@pytest.fixture
def receiver() -> Iterator[SpanReceiver]:
    with SpanReceiver() as r:
        yield r


def emit_request(exporter: SpanExporter, *, start_s: float = 1000.0, route: str = "/items/{id}",
                 service: str = "shop") -> tuple[Any, Any]:
    """A SERVER span with one CLIENT (DB) child, through a real TracerProvider; returns both spans.

    Shutting the provider down shuts ``exporter`` down too: pass a fresh one each time.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    start = int(start_s * NS)
    server = tracer.start_span(f"GET {route}", kind=SpanKind.SERVER, start_time=start,
                               attributes={"http.route": route, "http.response.status_code": 500})
    db = tracer.start_span("SELECT", kind=SpanKind.CLIENT, start_time=start + 1_000_000,
                           context=trace.set_span_in_context(server),
                           attributes={"db.system": "sqlite", "db.statement": "SELECT 1", "rows": 3,
                                       "cached": False, "ratio": 0.5, "tags": ["a", "b"]})
    db.end(end_time=start + 4_000_000)
    server.set_status(Status(StatusCode.ERROR))
    server.end(end_time=start + 10_000_000)
    provider.shutdown()
    return server, db


def readable_spans(n: int = 1, **kwargs: Any) -> list[ReadableSpan]:
    spans: list[ReadableSpan] = []
    for i in range(n):
        memory = InMemorySpanExporter()
        emit_request(memory, start_s=1000.0 + i, **kwargs)
        spans.extend(memory.get_finished_spans())
    return spans


def otlp_json(spans: list[ReadableSpan]) -> bytes:
    """The OTLP JSON encoding: protobuf's JSON mapping, but trace and span ids in hex."""
    document = json_format.MessageToDict(encode_spans(spans))
    for rs in document["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def test_protobuf_export_keeps_ids_links_kinds_and_attributes(receiver: SpanReceiver) -> None:
    server, db = emit_request(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5))
    spans = receiver.drain()
    assert [s["name"] for s in spans] == ["GET /items/{id}", "SELECT"]
    got_server, got_db = spans
    assert got_server["trace_id"] == got_db["trace_id"] == format(server.context.trace_id, "032x")
    assert got_server["span_id"] == format(server.context.span_id, "016x")
    assert got_server["parent_id"] is None and got_db["parent_id"] == got_server["span_id"]
    assert (got_server["kind"], got_db["kind"]) == ("SERVER", "CLIENT")
    assert got_server["start_ts"] == pytest.approx(1000.0) and got_server["duration_ms"] == pytest.approx(10.0)
    assert got_db["duration_ms"] == pytest.approx(3.0)
    assert got_db["attributes"] == {"db.system": "sqlite", "db.statement": "SELECT 1", "rows": 3, "cached": False,
                                    "ratio": 0.5, "tags": ["a", "b"], "service.name": "shop"}
    assert got_server["attributes"]["otel.status_code"] == "ERROR"
    assert got_server["attributes"]["http.response.status_code"] == 500
    assert receiver.stats()["received"] == 2 and receiver.stats()["buffered"] == 0


def test_gzip_bodies_from_the_exporter_and_by_hand(receiver: SpanReceiver) -> None:
    emit_request(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5, compression=Compression.Gzip))
    assert len(receiver.drain()) == 2
    body = gzip.compress(encode_spans(readable_spans()).SerializeToString())
    answer = httpx.post(receiver.endpoint, content=body, headers={
        "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-protobuf"
    assert len(receiver.drain()) == 2


def test_otlp_json_decodes_like_protobuf(receiver: SpanReceiver) -> None:
    spans = readable_spans(3)
    binary = httpx.post(receiver.endpoint, content=encode_spans(spans).SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf"})
    from_protobuf = receiver.drain()
    answer = httpx.post(receiver.endpoint, content=otlp_json(spans), headers={"Content-Type": "application/json"})
    from_json = receiver.drain()
    assert binary.status_code == answer.status_code == 200
    assert answer.json() == {}
    assert len(from_json) == 6 and from_json == from_protobuf


def test_bad_requests_are_refused_and_counted(receiver: SpanReceiver) -> None:
    body = encode_spans(readable_spans()).SerializeToString()
    cases = [
        ("/v1/metrics", {"Content-Type": "application/x-protobuf"}, body, 404),
        ("/v1/traces", {"Content-Type": "text/plain"}, body, 415),
        ("/v1/traces", {"Content-Type": "application/x-protobuf"}, b"\xff\x00garbage", 400),
        ("/v1/traces", {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, body, 400),
        ("/v1/traces", {"Content-Type": "application/json"}, b"[1, 2]", 400),
    ]
    with httpx.Client(base_url=f"http://127.0.0.1:{receiver.port}") as client:
        statuses = [client.post(path, content=data, headers=headers).status_code
                    for path, headers, data, _ in cases]
    assert statuses == [status for *_, status in cases]
    assert receiver.stats()["rejected"] == 4 and receiver.stats()["received"] == 0


def test_the_buffer_keeps_the_newest_spans_and_counts_drops() -> None:
    spans = readable_spans(60)  # 120 spans, in time order
    with SpanReceiver(max_spans=50) as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5)
        for i in range(0, len(spans), 20):
            exporter.export(spans[i:i + 20])
        exporter.shutdown()
        stats = receiver.stats()
        kept = receiver.drain()
    assert (stats["received"], stats["dropped"], stats["buffered"]) == (120, 70, 50)
    assert [s["start_ts"] for s in kept] == sorted(s.start_time / NS for s in spans)[-50:]


def test_drain_takes_one_window_and_leaves_later_spans(receiver: SpanReceiver) -> None:
    for start in (100.0, 200.0, 300.0):
        emit_request(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5), start_s=start)
    window = receiver.drain(since=150.0, until=250.0)
    assert [s["start_ts"] for s in window] == pytest.approx([200.0, 200.001])
    later = receiver.drain()
    assert sorted({round(s["start_ts"]) for s in later}) == [300]  # the one before the window is gone


def test_drain_by_service_leaves_other_services(receiver: SpanReceiver) -> None:
    emit_request(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5), service="shop")
    emit_request(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5), service="other")
    assert {s["attributes"]["service.name"] for s in receiver.drain(service="shop")} == {"shop"}
    assert {s["attributes"]["service.name"] for s in receiver.drain()} == {"other"}


def test_wait_quiet_returns_once_exports_stop(receiver: SpanReceiver) -> None:
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.wait(0.05):
            emit_request(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5))

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        assert not receiver.wait_quiet(quiet_s=0.5, timeout_s=1.0)  # exports every 50 ms: never quiet
    finally:
        stop.set()
        sender.join(10)
    assert receiver.wait_quiet(quiet_s=0.3, timeout_s=5.0)


def test_stop_closes_the_socket_and_idle_keepalive_connections() -> None:
    receiver = SpanReceiver().start()
    exporter = OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5)
    exporter.export(readable_spans())  # leaves a keep-alive connection open, idle
    assert [t for t in threading.enumerate() if t.name == "otlp-connection"]
    began = time.monotonic()
    receiver.stop(timeout_s=10)
    took = time.monotonic() - began
    exporter.shutdown()
    assert took < CONNECTION_IDLE_S / 3  # closed, not waited out
    assert not receiver.running
    assert not [t for t in threading.enumerate() if t.name.startswith("otlp-")]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", receiver.port)) != 0
    receiver.stop()  # idempotent
