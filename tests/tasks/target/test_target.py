"""The target lifecycle against a real app (tests/tasks/target/target_app.py) in real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tasks.errors import (
    PortBusyError,
    RefusedError,
    SpecError,
    TargetNotReadyError,
    TargetUnreachableError,
)
from tasks.spec import StartSpec, TargetSpec
from tasks.target import (
    TargetHandle,
    apply_http_knob,
    attach_target,
    free_port,
    knob_env,
    read_http_knob,
    resolve_command,
    restart_target,
    run_setup,
    running_target,
    start_target,
    stop_target,
)

APP = Path(__file__).with_name("target_app.py")
REPO = Path(__file__).resolve().parents[3]
GONE_TIMEOUT_S = 15
KNOBS = {
    "greeting": {"type": "choice", "choices": ["hello", "hola"], "default": "hello", "apply": {"env": "APP_GREETING"}},
    "flag": {"type": "bool", "default": False, "apply": {"env": "APP_FLAG"}},
    "cache_ttl_s": {
        "type": "int", "low": 0, "high": 120, "default": 0,
        "apply": {"http": {"method": "PUT", "path": "/admin/config", "field": "cache_ttl_s"}},
    },
}


def make_spec(
    *,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    ready_timeout_s: float = 30,
    setup: list[list[str]] | None = None,
    spec_dir: Path = APP.parent,
    cwd: str = ".",
    **extra: Any,
) -> TargetSpec:
    start = StartSpec(
        command=command or ["python", str(APP), "--port", "{port}"],
        cwd=cwd,
        env={"APP_PID_FILE": "{workdir}/app.pid", **(env or {})},
        ready_timeout_s=ready_timeout_s,
        **extra,
    )
    return TargetSpec(
        name="app", base_url="http://127.0.0.1:{port}", start=start, setup=setup or [],
        load={"endpoints": [{"name": "root", "path": "/"}]}, knobs=KNOBS, spec_dir=spec_dir,
    )


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout_s: float = GONE_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return all(gone(pid) for pid in pids)


def kill_quietly(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def info(handle: TargetHandle) -> dict[str, Any]:
    return httpx.get(handle.base_url + "/", timeout=5).json()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[TargetHandle]]:
    """Handles a test started; stopped afterwards even when the test fails."""
    handles: list[TargetHandle] = []
    yield handles
    for handle in handles:
        stop_target(handle)


def test_start_ready_pids_stop_leaves_no_orphans(tmp_path: Path, started: list[TargetHandle]) -> None:
    handle = start_target(make_spec(env={"APP_CHILDREN": "1"}), tmp_path)
    started.append(handle)
    body = info(handle)
    in_group, own_session = body["children"]
    assert handle.is_running()
    assert body["pid"] == handle.process.pid
    assert {handle.process.pid, in_group, own_session} <= set(handle.pids())
    assert (tmp_path / "app.pid").read_text() == str(body["pid"])  # {workdir} rendered
    assert "listening on port" in handle.log_path.read_text()
    try:
        stop_target(handle)
        assert wait_gone([body["pid"], in_group, own_session])
        assert not handle.is_running()
        assert handle.pids() == []
        stop_target(handle)  # idempotent
    finally:
        kill_quietly([in_group, own_session])


def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path, started: list[TargetHandle]) -> None:
    handle = start_target(make_spec(env={"APP_CHILDREN": "1", "APP_IGNORE_TERM": "1"}), tmp_path)
    started.append(handle)
    pids = [handle.process.pid, *info(handle)["children"]]
    try:
        stop_target(handle, timeout_s=0.5)
        assert wait_gone(pids)
        assert handle.process.returncode == -signal.SIGKILL
    finally:
        kill_quietly(pids)


def test_knob_env_values_and_extra_env_reach_the_target(tmp_path: Path, started: list[TargetHandle]) -> None:
    spec = make_spec()
    assert knob_env(spec, {"flag": True, "greeting": "hola"}) == {"APP_GREETING": "hola", "APP_FLAG": "1"}
    assert knob_env(spec, None) == {"APP_GREETING": "hello", "APP_FLAG": "0"}
    with pytest.raises(SpecError, match="unknown knob 'nope'"):
        knob_env(spec, {"nope": 1})
    handle = start_target(spec, tmp_path, {"greeting": "hola", "flag": True}, extra_env={"APP_EXTRA": "x"})
    started.append(handle)
    body = info(handle)
    assert (body["greeting"], body["flag"], body["extra"]) == ("hola", "1", "x")
    assert handle.config == {"greeting": "hola", "flag": True, "cache_ttl_s": 0}


def test_python_runs_with_the_toolkit_interpreter(tmp_path: Path, started: list[TargetHandle]) -> None:
    assert resolve_command(["python3", "-V"], tmp_path) == [sys.executable, "-V"]
    handle = start_target(make_spec(), tmp_path)
    started.append(handle)
    body = info(handle)
    assert body["executable"] == sys.executable
    assert body["cwd"] == str(APP.parent)


def fake_venv(root: Path) -> Path:
    """A 'virtualenv' of the target's own: a bin folder with a python symlink."""
    (root / "venv" / "bin").mkdir(parents=True)
    python = root / "venv" / "bin" / "python"
    python.symlink_to(sys.executable)
    return python


def test_program_from_another_virtualenv_is_used_as_given(tmp_path: Path, started: list[TargetHandle]) -> None:
    python = fake_venv(tmp_path)
    spec = make_spec(command=["./venv/bin/python", str(APP), "--port", "{port}"], spec_dir=tmp_path)
    handle = start_target(spec, tmp_path / "work")
    started.append(handle)
    assert info(handle)["executable"] == str(python)


def test_missing_program_is_a_spec_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="'./nowhere/python'"):
        start_target(make_spec(command=["./nowhere/python", "app.py"]), tmp_path)
    with pytest.raises(SpecError, match="'no-such-program-xyz'"):
        start_target(make_spec(command=["no-such-program-xyz"]), tmp_path)


def test_tracing_without_the_launcher_is_a_clear_error(tmp_path: Path) -> None:
    fake_venv(tmp_path)
    spec = make_spec(command=["./venv/bin/python", str(APP), "--port", "{port}"], spec_dir=tmp_path, tracing="opentelemetry")
    with pytest.raises(SpecError, match="opentelemetry-instrument"):
        start_target(spec, tmp_path / "work")


def test_ready_timeout_stops_the_target_and_names_the_log_line(tmp_path: Path) -> None:
    spec = make_spec(env={"APP_READY_DELAY_S": "600"}, ready_timeout_s=1.5)
    with pytest.raises(TargetNotReadyError, match=r"not ready at .*/health within 1.5 s: listening on port \d+") as err:
        start_target(spec, tmp_path)
    assert "\n" not in str(err.value)
    assert wait_gone([int((tmp_path / "app.pid").read_text())])


def test_early_exit_is_not_ready_with_the_last_log_line(tmp_path: Path) -> None:
    spec = make_spec(env={"APP_EXIT_MESSAGE": "boom: SHOP_DB is not set"})
    with pytest.raises(TargetNotReadyError, match="exited with code 3 before it was ready: boom: SHOP_DB is not set"):
        start_target(spec, tmp_path)


def test_explicit_busy_port_is_port_busy(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortBusyError, match=str(port)):
            start_target(make_spec(), tmp_path, port=port)
    assert not (tmp_path / "app.pid").exists()  # refused before anything ran


def test_port_taken_before_bind_is_retried_on_new_ports(tmp_path: Path) -> None:
    spec = make_spec(env={"APP_EXIT_MESSAGE": "OSError: [Errno 98] Address already in use"})
    with pytest.raises(PortBusyError, match="was taken before target app bound it"):
        start_target(spec, tmp_path)
    log = (tmp_path / "target-app.log").read_text()
    ports = {line.rsplit("port ", 1)[1] for line in log.splitlines() if line.startswith("--- perfagents:")}
    assert len(ports) == 3  # three attempts, three different ports


def test_tracing_prefixes_the_launcher_next_to_the_program(tmp_path: Path, started: list[TargetHandle]) -> None:
    fake_venv(tmp_path)
    launcher = tmp_path / "venv" / "bin" / "opentelemetry-instrument"  # a fake: exports a marker, execs the rest
    launcher.write_text('#!/bin/sh\nexport APP_EXTRA="traced as $OTEL_SERVICE_NAME"\nexec "$@"\n')
    launcher.chmod(0o755)
    spec = make_spec(command=["./venv/bin/python", str(APP), "--port", "{port}"], spec_dir=tmp_path, tracing="opentelemetry")
    handle = start_target(spec, tmp_path / "work")
    started.append(handle)
    assert info(handle)["extra"] == "traced as app"


def test_attach_to_a_running_server_and_to_an_unreachable_url(tmp_path: Path, started: list[TargetHandle]) -> None:
    server = start_target(make_spec(), tmp_path)
    started.append(server)
    spec = TargetSpec(name="ext", base_url=server.base_url, load={"endpoints": [{"name": "r", "path": "/"}]})
    handle = attach_target(spec)
    assert (handle.port, handle.process, handle.base_url) == (server.port, None, server.base_url)
    assert handle.is_running()
    assert handle.pids() == [server.process.pid]  # the port's listener
    stop_target(handle)  # attached: nothing to stop
    assert server.is_running()

    dead = spec.model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(TargetUnreachableError, match=r"base_url http://127.0.0.1:\d+ is unreachable: ConnectError"):
        attach_target(dead)
    with pytest.raises(SpecError, match=r"\{port\}"):
        attach_target(spec.model_copy(update={"base_url": "http://127.0.0.1:{port}"}))


def test_http_knob_set_read_refused_and_applied_at_start(tmp_path: Path, started: list[TargetHandle]) -> None:
    spec = make_spec()
    knob = spec.knobs["cache_ttl_s"]
    handle = start_target(spec, tmp_path, {"cache_ttl_s": 30})
    started.append(handle)
    assert read_http_knob(handle, "cache_ttl_s", knob) == 30  # non-default value set at start
    apply_http_knob(handle, "cache_ttl_s", knob, 60)
    assert read_http_knob(handle, "cache_ttl_s", knob) == 60
    assert handle.config["cache_ttl_s"] == 60
    with pytest.raises(RefusedError, match=r"refused knob cache_ttl_s=-1: PUT .* answered 400 .*must be >= 0"):
        apply_http_knob(handle, "cache_ttl_s", knob, -1)
    with pytest.raises(SpecError, match="via env"):
        apply_http_knob(handle, "flag", spec.knobs["flag"], True)


def test_restart_applies_new_values_on_the_same_port_in_place(tmp_path: Path, started: list[TargetHandle]) -> None:
    spec = make_spec()
    handle = start_target(spec, tmp_path)
    started.append(handle)
    old_pid, port = handle.process.pid, handle.port
    same = restart_target(handle, spec, {"greeting": "hola"})
    assert same is handle and handle.port == port and not handle.stopped
    assert wait_gone([old_pid])
    body = info(handle)
    assert body["pid"] == handle.process.pid != old_pid
    assert body["greeting"] == "hola"
    assert handle.log_path.read_text().count("--- perfagents:") == 2  # one log, appended


def test_keyboard_interrupt_inside_running_target_stops_it(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with running_target(make_spec(env={"APP_CHILDREN": "1"}), tmp_path) as handle:
            pids = handle.pids()
            assert len(pids) == 3
            raise KeyboardInterrupt
    try:
        assert wait_gone(pids)
    finally:
        kill_quietly(pids)


def test_ctrl_c_while_waiting_for_ready_stops_the_target(tmp_path: Path) -> None:
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            start_target(make_spec(env={"APP_READY_DELAY_S": "600"}, ready_timeout_s=60), tmp_path)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert wait_gone([int((tmp_path / "app.pid").read_text())])


def test_target_outlives_the_thread_that_started_it(tmp_path: Path, started: list[TargetHandle]) -> None:
    thread = threading.Thread(target=lambda: started.append(start_target(make_spec(), tmp_path)))
    thread.start()
    thread.join(timeout=60)
    time.sleep(0.5)  # PDEATHSIG would have fired when the thread ended
    assert started and started[0].is_running()


PARENT = """
import sys, time
from pathlib import Path
from tasks.spec import StartSpec, TargetSpec
from tasks.target import start_target
spec = TargetSpec(name="app", base_url="http://127.0.0.1:{port}",
                  start=StartSpec(command=["python", sys.argv[1], "--port", "{port}"]),
                  load={"endpoints": [{"name": "r", "path": "/"}]})
handle = start_target(spec, Path(sys.argv[2]))
print(handle.process.pid, flush=True)
time.sleep(60)
"""


def test_target_dies_when_the_toolkit_is_sigkilled(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(APP), str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    target_pid = None
    try:
        line = parent.stdout.readline()
        target_pid = int(line)
        assert not gone(target_pid)
        parent.kill()
        parent.wait(timeout=10)
        assert wait_gone([target_pid])
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if target_pid is not None:
            kill_quietly([target_pid])


def test_setup_writes_reach_the_disk_before_the_target_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("tasks.target.lifecycle.os.sync", lambda: calls.append("sync"))
    write = ["python", "-c", "import sys; open(sys.argv[1], 'w').write('seeded')", "{workdir}/db"]
    run_setup(make_spec(setup=[write]), tmp_path)
    assert (tmp_path / "db").read_text() == "seeded" and calls == ["sync"]
    run_setup(make_spec(setup=[]), tmp_path)
    assert calls == ["sync"]  # nothing written, nothing to flush


def test_setup_runs_in_the_start_cwd_and_fails_in_one_line(tmp_path: Path) -> None:
    spec_dir, app_dir, work = tmp_path / "spec", tmp_path / "app", tmp_path / "work"
    spec_dir.mkdir()
    app_dir.mkdir()
    record = ["python", "-c", "import os, sys; open(sys.argv[1], 'a').write(os.getcwd() + '\\n')", "{workdir}/cwd.txt"]
    spec = make_spec(spec_dir=spec_dir, cwd="../app", setup=[record, record])
    run_setup(spec, work)
    assert (work / "cwd.txt").read_text().splitlines() == [str(app_dir)] * 2  # each once, in start.cwd
    no_start = spec.model_copy(update={"start": None})
    (work / "cwd.txt").unlink()
    run_setup(no_start, work)
    assert (work / "cwd.txt").read_text().splitlines() == [str(spec_dir)] * 2

    fail = ["python", "-c", "import sys; print('seeding'); sys.stderr.write('trace\\nseed failed: no such table\\n'); sys.exit(4)"]
    with pytest.raises(SpecError, match=r"setup command 'python -c .*' failed with exit 4: seed failed: no such table$") as err:
        run_setup(make_spec(setup=[fail]), work)
    assert "\n" not in str(err.value)
    log = (work / "setup-app.log").read_text()
    assert "seeding" in log and "seed failed" in log

    slow = ["python", "-c", "import time; time.sleep(60)"]
    with pytest.raises(SpecError, match=r"timed out \(setup budget 1 s\)"):
        run_setup(make_spec(setup=[slow]), work, timeout_s=1)
    with pytest.raises(SpecError, match="'missing-seeder'"):
        run_setup(make_spec(setup=[["missing-seeder"]]), work)
