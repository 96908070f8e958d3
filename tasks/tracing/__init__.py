"""Request-level traces: receive a traced target's spans (OTLP/HTTP on loopback) and break them down.

    spans.py      SpanRecord (one flat span), cap_spans, spans_frame (rows of the store's spans table)
    otlp.py       OTLP/HTTP bodies (protobuf or JSON, gzip or not) -> span records
    receiver.py   SpanReceiver: threaded HTTP server on 127.0.0.1, bounded buffer, drain(since, until)
    shared.py     the process-wide receiver the target lifecycle acquires/releases; otel_env
    chain.py      keeps a sitecustomize that opentelemetry-instrument shadows (SQL capture) running
    inject/       the hook module copied into the traced target's PYTHONPATH
    breakdown.py  per-endpoint DB time share from SERVER spans and their DB descendants

The protobuf modules (``opentelemetry-proto``) are imported only when a receiver is created.
"""

from __future__ import annotations

from tasks.tracing.breakdown import endpoint_breakdown
from tasks.tracing.receiver import SpanReceiver
from tasks.tracing.shared import acquire_receiver, current_receiver, otel_env, release_receiver
from tasks.tracing.spans import MAX_STORED_SPANS, SPANS_KEY, SpanRecord, cap_spans, spans_frame

__all__ = [
    "MAX_STORED_SPANS",
    "SPANS_KEY",
    "SpanReceiver",
    "SpanRecord",
    "acquire_receiver",
    "cap_spans",
    "current_receiver",
    "endpoint_breakdown",
    "otel_env",
    "release_receiver",
    "spans_frame",
]
