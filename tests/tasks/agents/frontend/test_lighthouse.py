"""Finding and bounding Lighthouse; the real run is in test_frontend.py (needs `npm install lighthouse`)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from tasks.agents.frontend.lighthouse import (
    LIGHTHOUSE_ENV,
    find_lighthouse,
    run_lighthouse,
    summarise_lighthouse,
)


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_env_override_disables_or_names_the_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIGHTHOUSE_ENV, "off")
    assert find_lighthouse([tmp_path]) is None
    monkeypatch.setenv(LIGHTHOUSE_ENV, str(tmp_path / "missing"))
    assert find_lighthouse([tmp_path]) is None
    binary = write_script(tmp_path / "lh", "exit 0\n")
    monkeypatch.setenv(LIGHTHOUSE_ENV, str(binary))
    assert find_lighthouse() == str(binary)


def test_node_modules_bin_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIGHTHOUSE_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "node_modules" / ".bin").mkdir(parents=True)
    binary = write_script(tmp_path / "node_modules" / ".bin" / "lighthouse", "exit 0\n")
    assert find_lighthouse([tmp_path / "elsewhere", tmp_path]) == str(binary)


def test_overrunning_lighthouse_is_stopped_with_its_children(tmp_path: Path) -> None:
    # a fake lighthouse (the real one is optional here): it starts a child and hangs
    pidfile = tmp_path / "child.pid"
    fake = write_script(tmp_path / "fake-lighthouse", f"sleep 60 & echo $! > {pidfile}\nsleep 60\n")
    started = time.monotonic()
    result = run_lighthouse(str(fake), "http://127.0.0.1:1/", "/usr/bin/chromium", [], timeout_s=1.0)
    assert time.monotonic() - started < 10
    assert "did not finish within 1 s" in result["error"]
    child = int(pidfile.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_failing_lighthouse_reports_its_last_error_line(tmp_path: Path) -> None:
    fake = write_script(tmp_path / "fake-lighthouse", "echo 'Runtime error: CHROME_PATH is wrong' >&2\nexit 1\n")
    result = run_lighthouse(str(fake), "http://127.0.0.1:1/", "/nowhere", [], timeout_s=10)
    assert result == {"error": "lighthouse exited with 1: Runtime error: CHROME_PATH is wrong"}


def test_summary_keeps_score_metrics_and_failing_audits() -> None:
    report = {
        "lighthouseVersion": "12.8.2",
        "categories": {"performance": {"score": 0.61, "auditRefs": [
            {"id": "first-contentful-paint"}, {"id": "uses-text-compression"}, {"id": "uses-long-cache-ttl"},
            {"id": "diagnostics"}]}},
        "audits": {
            "first-contentful-paint": {"score": 0.2, "numericValue": 2457.0},
            "uses-text-compression": {"score": 0, "title": "Enable text compression", "displayValue": "Est savings of 301 KiB",
                                      "numericValue": 1500, "details": {"overallSavingsMs": 1500, "overallSavingsBytes": 308000}},
            "uses-long-cache-ttl": {"score": 1, "title": "Cache"},
            "diagnostics": {"score": None},
        },
    }
    summary = summarise_lighthouse(report)
    assert summary["score"] == 0.61 and summary["metrics"] == {"first-contentful-paint": 2457.0}
    assert list(summary["audits"]) == ["uses-text-compression"]
    assert summary["audits"]["uses-text-compression"]["savings_bytes"] == 308000
