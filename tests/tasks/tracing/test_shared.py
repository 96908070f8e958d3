"""The process-wide receiver: held while a traced target runs, stopped by the last release."""

from __future__ import annotations

import socket
import threading

import pytest

pytest.importorskip("opentelemetry.proto")

from tasks.tracing import acquire_receiver, current_receiver, otel_env, release_receiver  # noqa: E402


def test_the_last_release_stops_the_shared_receiver() -> None:
    first, second = object(), object()
    receiver = acquire_receiver(first)
    try:
        assert acquire_receiver(second) is receiver and acquire_receiver(first) is receiver
        assert current_receiver() is receiver
        release_receiver(first)
        assert current_receiver() is receiver and receiver.running  # second still holds it
        release_receiver(object())  # not a holder: nothing happens
        assert receiver.running
    finally:
        release_receiver(first)
        release_receiver(second)
    assert current_receiver() is None and not receiver.running
    assert not [t for t in threading.enumerate() if t.name.startswith("otlp-")]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", receiver.port)) != 0
    again = acquire_receiver(first)  # a later start gets a fresh one
    try:
        assert again is not receiver and again.running
    finally:
        release_receiver(first)


def test_otel_env_points_the_sdk_at_the_receiver_and_keeps_the_users_choices() -> None:
    owner = object()
    receiver = acquire_receiver(owner)
    try:
        env = otel_env(receiver, {"PATH": "/bin"})
        assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == f"http://127.0.0.1:{receiver.port}/v1/traces"
        assert env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
        assert (env["OTEL_TRACES_EXPORTER"], env["OTEL_METRICS_EXPORTER"], env["OTEL_LOGS_EXPORTER"]) == (
            "otlp", "none", "none")
        assert int(env["OTEL_BSP_SCHEDULE_DELAY"]) <= 500
        users = otel_env(receiver, {"OTEL_BSP_SCHEDULE_DELAY": "1000", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
        assert "OTEL_BSP_SCHEDULE_DELAY" not in users
        assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in users  # would override the user's generic endpoint
        assert users["OTEL_TRACES_EXPORTER"] == "otlp"
    finally:
        release_receiver(owner)
