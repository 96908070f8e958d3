"""OTLP/HTTP trace payloads -> span records (tasks.tracing.spans).

Bodies are ``ExportTraceServiceRequest`` messages from the ``opentelemetry-proto`` package,
binary (``application/x-protobuf``) or OTLP JSON (``application/json``, where trace and span
ids are hex strings, not base64), optionally gzip-compressed. The protobuf modules are
imported on first use, so importing this module needs nothing beyond the standard library.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import TYPE_CHECKING, Any

from tasks.tracing.spans import SpanRecord

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 32 * 1024 * 1024  # decompressed; the SDK sends batches of 512 spans (~100 KB)
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_STATUS = {1: "OK", 2: "ERROR"}


class PayloadError(ValueError):
    """A body that is not a trace export request; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def proto_modules() -> tuple[Any, Any, Any]:
    """(trace_service_pb2, trace_pb2, json_format), imported on first use."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    return trace_service_pb2, trace_pb2, json_format


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body without its gzip Content-Encoding, refusing more than ``limit`` bytes of output."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise PayloadError(f"unsupported Content-Encoding {encoding!r}", 415)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PayloadError(f"bad gzip body: {exc}") from exc
    if len(out) > limit:
        raise PayloadError(f"body larger than {limit} bytes once decompressed", 413)
    return out


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Decode an export request from protobuf or OTLP JSON bytes."""
    trace_service_pb2, _, json_format = proto_modules()
    message = trace_service_pb2.ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            message.ParseFromString(body)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            raise PayloadError(f"bad protobuf body: {exc}") from exc
        return message
    if content_type == JSON:
        try:
            document = json.loads(body)
            json_format.ParseDict(_ids_to_base64(document), message, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError) as exc:
            raise PayloadError(f"bad OTLP JSON body: {exc}") from exc
        return message
    raise PayloadError(f"unsupported Content-Type {content_type!r} (use {PROTOBUF} or {JSON})", 415)


def response_body(content_type: str) -> bytes:
    """An empty ExportTraceServiceResponse in the request's encoding."""
    if content_type == JSON:
        return b"{}"
    trace_service_pb2, _, _ = proto_modules()
    return trace_service_pb2.ExportTraceServiceResponse().SerializeToString()


def span_records(message: ExportTraceServiceRequest) -> list[SpanRecord]:
    """Flatten resource -> scope -> span into records."""
    _, trace_pb2, _ = proto_modules()
    kind_name = trace_pb2.Span.SpanKind.Name
    out: list[SpanRecord] = []
    for resource_spans in message.resource_spans:
        service = None
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = any_value(kv.value)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {kv.key: any_value(kv.value) for kv in span.attributes}
                if service is not None:
                    attributes.setdefault("service.name", service)
                if span.status.code in _STATUS:
                    attributes.setdefault("otel.status_code", _STATUS[span.status.code])
                out.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_id": span.parent_span_id.hex() or None,
                    "name": span.name,
                    "kind": kind_name(span.kind).removeprefix("SPAN_KIND_"),
                    "start_ts": span.start_time_unix_nano / 1e9,
                    "duration_ms": max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
                    "attributes": attributes,
                })
    return out


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a plain Python value (bytes as hex)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _ids_to_base64(document: Any) -> Any:
    """OTLP JSON writes ids as hex; protobuf's JSON mapping wants base64 for bytes fields."""
    if not isinstance(document, dict):
        raise PayloadError("OTLP JSON body is not an object")
    for resource_spans in document.get("resourceSpans") or document.get("resource_spans") or []:
        scopes = resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or []
        for scope_spans in scopes:
            for span in scope_spans.get("spans") or []:
                _convert_ids(span)
                for link in span.get("links") or []:
                    _convert_ids(link)
    return document


def _convert_ids(item: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = item.get(key)
        if isinstance(value, str) and value:
            try:
                item[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                pass  # not hex: maybe base64 already; protobuf decides
