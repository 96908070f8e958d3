"""Under opentelemetry-instrument, the sitecustomize it shadows (perfagents' SQL capture) still runs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from tasks.agents.database.sqlcapture import capture_env, sql_log_dir
from tasks.spec import TargetSpec
from tasks.target import start_target, stop_target
from tasks.tracing import current_receiver
from tasks.tracing.chain import DIST_INFO, HOOK_SUBDIR

APP = Path(__file__).resolve().parents[1] / "agents" / "traced_app.py"  # the tracing agent's test target
VENV_BIN = Path(sys.executable).parent  # no resolve(): the launcher sits next to the venv's python
FLUSH_WAIT_S = 1.0  # the SQL capture writes every 0.25 s

pytestmark = pytest.mark.skipif(not (VENV_BIN / "opentelemetry-instrument").is_file(),
                                reason="opentelemetry-distro is not installed next to the test's python")


def traced_spec(tmp_path: Path) -> TargetSpec:
    return TargetSpec.model_validate({
        "name": "traced", "base_url": "http://127.0.0.1:{port}", "spec_dir": tmp_path,
        "start": {"command": [str(VENV_BIN / "python"), str(APP), "--port", "{port}"],
                  "env": {"APP_DB": "{workdir}/app.db"}, "tracing": "opentelemetry"},
        "load": {"endpoints": [{"name": "items", "path": "/items/{int:1:50}"}]},
    })


def captured_sql(folder: Path) -> str:
    """The SQL texts the capture wrote (one JSON array of records per line; a record's third field)."""
    batches = [json.loads(line) for file in folder.glob("sql-*.jsonl") for line in file.read_text().splitlines()]
    return "\n".join(str(record[2]) for batch in batches for record in batch)


def test_sql_capture_and_spans_both_arrive(tmp_path: Path) -> None:
    work = tmp_path / "work"
    handle = start_target(traced_spec(tmp_path), work, extra_env=capture_env(sql_log_dir(work)))
    try:
        receiver = current_receiver()
        assert receiver is not None
        began = time.time()  # after the seeding at start-up, which runs SQL too
        with httpx.Client(base_url=handle.base_url, timeout=10) as client:
            for i in range(3):
                assert client.get(f"/items/{i + 1}").status_code == 200
        time.sleep(FLUSH_WAIT_S)
        receiver.wait_quiet(0.5, 3.0)
        spans = receiver.drain(since=began)
    finally:
        stop_target(handle)
    assert captured_sql(sql_log_dir(work)).count("WITH RECURSIVE") == 3
    assert sum(1 for s in spans if s["attributes"].get("db.system") == "sqlite") == 12
    assert (work / HOOK_SUBDIR / DIST_INFO / "entry_points.txt").is_file()
    log = (work / "target-traced.log").read_text()
    assert "sitecustomize" not in log and "Traceback" not in log
