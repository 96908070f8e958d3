"""One OTLP receiver per perfagents process, shared by the traced targets it started.

The target lifecycle acquires it when it starts a target with ``start.tracing:
opentelemetry`` and releases it when that target stops; the last release stops it (and an
``atexit`` hook stops whatever is left). ``otel_env`` gives the variables the target's
OpenTelemetry SDK reads to send its spans there.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from pathlib import Path

from tasks.errors import SpecError
from tasks.tracing.chain import hook_pythonpath
from tasks.tracing.receiver import STOP_TIMEOUT_S, SpanReceiver

BSP_SCHEDULE_DELAY_MS = 200  # the SDK's batch exporter sends at least this often (its default: 5000)
BSP_MAX_QUEUE_SIZE = 8192  # spans the SDK queues between exports before dropping (its default: 2048)

_lock = threading.Lock()
_receiver: SpanReceiver | None = None
_owners: list[object] = []  # compared by identity


def acquire_receiver(owner: object) -> SpanReceiver:
    """The shared receiver, started if needed; ``owner`` holds it until ``release_receiver``."""
    global _receiver
    with _lock:
        if _receiver is None or not _receiver.running:
            try:
                receiver = SpanReceiver()
            except ImportError as exc:
                raise SpecError(
                    f"start.tracing: opentelemetry needs opentelemetry-proto in perfagents' environment ({exc})"
                ) from exc
            _receiver = receiver.start()
        if not any(o is owner for o in _owners):
            _owners.append(owner)
        return _receiver


def release_receiver(owner: object, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Drop ``owner``'s hold (a no-op for a non-holder); the last one out stops the receiver."""
    global _receiver
    with _lock:
        remaining = [o for o in _owners if o is not owner]
        if len(remaining) == len(_owners):
            return
        _owners[:] = remaining
        if remaining or _receiver is None:
            return
        receiver, _receiver = _receiver, None
    receiver.stop(timeout_s)


def current_receiver() -> SpanReceiver | None:
    """The running shared receiver, or None when no traced target runs."""
    with _lock:
        return _receiver if _receiver is not None and _receiver.running else None


def otel_env(receiver: SpanReceiver, env: Mapping[str, str], workdir: Path | None = None) -> dict[str, str]:
    """The OTel SDK variables that send traces to ``receiver``, minus those ``env`` already sets.

    A generic ``OTEL_EXPORTER_OTLP_ENDPOINT``/``_PROTOCOL`` in ``env`` keeps its traces-specific
    counterpart unset, since the specific one would override the user's choice. With
    ``workdir``, PYTHONPATH gets the hook that keeps shadowed sitecustomize modules running
    (tasks.tracing.chain).
    """
    wanted = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": str(BSP_SCHEDULE_DELAY_MS),
        "OTEL_BSP_MAX_QUEUE_SIZE": str(BSP_MAX_QUEUE_SIZE),
    }
    if "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
        wanted.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if "OTEL_EXPORTER_OTLP_PROTOCOL" in env:
        wanted.pop("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    out = {k: v for k, v in wanted.items() if k not in env}
    if workdir is not None:
        out["PYTHONPATH"] = hook_pythonpath(workdir, env)
    return out


@atexit.register
def _stop_at_exit() -> None:
    global _receiver
    with _lock:
        receiver, _receiver = _receiver, None
        _owners.clear()
    if receiver is not None:
        receiver.stop(1.0)
