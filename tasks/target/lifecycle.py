"""Setup, start on a free port, wait until ready, stop, restart and attach."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import fields
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from tasks.errors import (
    PortBusyError,
    RefusedError,
    SpecError,
    TargetNotReadyError,
    TargetUnreachableError,
)
from tasks.spec import TargetSpec, fill
from tasks.target.handle import PROBE_TIMEOUT_S, TargetHandle, describe_error, join_url, last_line
from tasks.target.knobs import apply_http_config, full_config, knob_env
from tasks.target.process import free_port, port_is_free, resolve_command, spawn, terminate_tree
from tasks.tracing.shared import acquire_receiver, otel_env, release_receiver

OTEL_LAUNCHER = "opentelemetry-instrument"
PORT_ATTEMPTS = 3
READY_POLL_S = 0.1
ATTACH_TIMEOUT_S = 5.0
SETUP_KILL_GRACE_S = 2.0
PORT_BUSY_MARKERS = ("address already in use", "errno 98")
LOG_TAIL_BYTES = 64 * 1024


def run_setup(spec: TargetSpec, workdir: Path, timeout_s: float = 300) -> None:
    """Run each ``setup`` command once, in order, within ``timeout_s`` for all of them.

    Commands run in the spec's folder, or in the start command's ``cwd`` (relative to the
    spec's folder) when the spec has a ``start``: the reference targets are modules
    importable from that folder, so ``python -m pkg.seed`` must see the same ``sys.path``
    as ``python -m pkg.app``. Output goes to ``workdir/setup-<name>.log``; a failing or
    overrunning command is a one-line SpecError (the target's input is wrong).
    """
    if not spec.setup:
        return
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cwd = _start_cwd(spec) if spec.start is not None else spec.spec_dir.resolve()
    deadline = time.monotonic() + timeout_s
    with open(workdir / f"setup-{spec.name}.log", "ab") as log:
        for raw in spec.setup:
            command = [fill(arg, workdir=workdir) for arg in raw]
            _run_setup_command(command, cwd, log, deadline, timeout_s)
    # Setup's writes (a seeded database) reach the disk now: left to writeback, they are flushed
    # by the target's first fsync, inside the first window (a rollback-journal SQLite commit holds
    # its lock meanwhile), and that window reads slow.
    os.sync()


def start_target(
    spec: TargetSpec,
    workdir: Path,
    config: dict[str, Any] | None = None,
    *,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> TargetHandle:
    """Start the target on a free port (or ``port``) and wait until its ready probe is 2xx.

    env = os.environ + start.env + knob env + ``extra_env``; output goes to
    ``workdir/target-<name>.log``. Knobs applied via http whose value differs from the spec
    default are set once the target is ready. On any failure (Ctrl-C too) the process tree
    is stopped before the error propagates. A port taken meanwhile is retried on a new one
    (``PORT_ATTEMPTS``), unless ``port`` was given.
    """
    if spec.start is None:
        raise SpecError(f"target {spec.name!r} has no start command; attach to it instead")
    values = full_config(spec, config)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        chosen = port if port is not None else free_port()
        try:
            return _start_once(spec, Path(workdir).resolve(), values, dict(extra_env or {}), chosen)
        except PortBusyError:
            if port is not None or attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def stop_target(handle: TargetHandle, timeout_s: float = 10) -> None:
    """SIGTERM the target's process group, SIGKILL what is left after ``timeout_s``.

    Idempotent; a no-op for an attached target.
    """
    if handle.stopped:
        return
    if handle.process is not None:
        terminate_tree(handle.process, timeout_s)
    if handle.log_file is not None:
        release_receiver(handle.log_file)  # a traced target's hold on the OTLP receiver; else a no-op
        handle.log_file.close()
    handle.stopped = True


def restart_target(handle: TargetHandle, spec: TargetSpec, config: dict[str, Any]) -> TargetHandle:
    """Stop and start again with new knob values, on the same port if it is still free.

    The handle is updated in place and returned, so whoever holds it (a ``running_target``
    block, a Runtime) sees the new process and stops it. The port, hence ``base_url``,
    changes only when the old port was taken meanwhile.
    """
    if handle.process is None or handle.workdir is None:
        raise RefusedError(f"target {spec.name} was not started by perfagents; it cannot be restarted")
    stop_target(handle)
    kwargs: dict[str, Any] = {"extra_env": handle.extra_env}
    try:
        new = start_target(spec, handle.workdir, config, port=handle.port, **kwargs)
    except PortBusyError:
        new = start_target(spec, handle.workdir, config, **kwargs)
    for f in fields(new):
        setattr(handle, f.name, getattr(new, f.name))
    return handle


def attach_target(spec: TargetSpec, workdir: Path | None = None) -> TargetHandle:
    """A handle on a target that already runs at ``base_url`` (any HTTP answer counts)."""
    if "{port}" in spec.base_url:
        raise SpecError(f"base_url {spec.base_url!r} uses {{port}}, which only a start command can fill")
    url = fill(spec.base_url, workdir=workdir)
    try:
        httpx.get(url, timeout=ATTACH_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise TargetUnreachableError(f"base_url {url} is unreachable: {describe_error(exc)}") from exc
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return TargetHandle(
        base_url=url, port=port, process=None, workdir=workdir,
        config=spec.default_config(), log_path=None,
    )


@contextmanager
def running_target(
    spec: TargetSpec,
    workdir: Path,
    config: dict[str, Any] | None = None,
    *,
    extra_env: dict[str, str] | None = None,
) -> Iterator[TargetHandle]:
    """Attach (no ``start``) or start the target; always stop what was started.

    Setup is not run here: call ``run_setup`` once per run before. ``config`` on an
    attached target sets its http knobs only (env knobs need a start).
    """
    if spec.start is None:
        handle = attach_target(spec, workdir)
        apply_http_config(handle, spec, full_config(spec, config))
        yield handle
        return
    handle = start_target(spec, workdir, config, extra_env=extra_env)
    try:
        yield handle
    finally:
        stop_target(handle)


def database_url(spec: TargetSpec, workdir: Path, port: int | None = None) -> str | None:
    """The spec's database URL with ``{workdir}``, ``{port}`` and ``${ENV}`` rendered."""
    if spec.database is None:
        return None
    return fill(spec.database.url, port=port, workdir=Path(workdir).resolve())


def _merged_pythonpath(extra_env: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    """The injected folders (capture, tracing) first, then the target's own PYTHONPATH (its
    ``start.env`` one included), each folder once: injecting never hides the target's modules."""
    if "PYTHONPATH" not in extra_env:
        return {}
    parts = [*extra_env["PYTHONPATH"].split(os.pathsep), *own.get("PYTHONPATH", "").split(os.pathsep)]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in parts if p))}


def _start_once(
    spec: TargetSpec, workdir: Path, values: dict[str, Any], extra_env: dict[str, str], port: int
) -> TargetHandle:
    start = spec.start
    assert start is not None
    workdir.mkdir(parents=True, exist_ok=True)
    if not port_is_free(port):
        raise PortBusyError(f"port {port} is already taken")
    cwd = _start_cwd(spec)

    def render(text: str) -> str:
        return fill(text, port=port, workdir=workdir)

    command = resolve_command([render(arg) for arg in start.command], cwd)
    own = {**os.environ, **{k: render(v) for k, v in start.env.items()}, **knob_env(spec, values)}
    env = {**own, **extra_env, **_merged_pythonpath(extra_env, own)}
    if start.tracing == "opentelemetry":
        command = _with_tracing(command)
        env.setdefault("OTEL_SERVICE_NAME", spec.name)
    base_url = render(spec.base_url)
    log_path = workdir / f"target-{spec.name}.log"
    log = open(log_path, "ab")  # closed by stop_target
    log.write(f"--- perfagents: {shlex.join(command)} (port {port})\n".encode())
    log.flush()
    offset = log.tell()
    try:
        if start.tracing == "opentelemetry":  # the log file stands for this start: stop_target releases it
            env.update(otel_env(acquire_receiver(log), env, workdir))
        process = spawn(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    except BaseException as exc:
        release_receiver(log)
        log.close()
        if isinstance(exc, OSError):
            raise SpecError(f"cannot start {command[0]!r}: {exc.strerror or exc}") from exc
        raise
    handle = TargetHandle(
        base_url=base_url, port=port, process=process, workdir=workdir,
        config=dict(values), log_path=log_path, extra_env=extra_env, log_file=log,
    )
    try:
        _wait_ready(handle, spec.name, join_url(base_url, start.ready_path), start.ready_timeout_s, offset)
        apply_http_config(handle, spec, values)
    except BaseException:
        stop_target(handle)
        raise
    return handle


def _wait_ready(handle: TargetHandle, name: str, url: str, timeout_s: float, offset: int) -> None:
    assert handle.process is not None and handle.log_path is not None
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        while True:
            rc = handle.process.poll()
            if rc is not None:
                text = _read_tail(handle.log_path, offset)
                if any(marker in text.lower() for marker in PORT_BUSY_MARKERS):
                    raise PortBusyError(f"port {handle.port} was taken before target {name} bound it: {last_line(text)}")
                raise TargetNotReadyError(f"target {name} exited with code {rc} before it was ready: {last_line(text)}")
            with suppress(httpx.HTTPError):
                if client.get(url).is_success:
                    return
            if time.monotonic() >= deadline:
                text = _read_tail(handle.log_path, offset)
                raise TargetNotReadyError(f"target {name} was not ready at {url} within {timeout_s:g} s: {last_line(text)}")
            time.sleep(READY_POLL_S)


def _with_tracing(command: list[str]) -> list[str]:
    """Prefix ``opentelemetry-instrument`` from the same bin folder as the program."""
    launcher = Path(command[0]).parent / OTEL_LAUNCHER
    if not launcher.is_file():
        raise SpecError(
            f"start.tracing: opentelemetry needs {launcher} (pip install opentelemetry-distro "
            f"opentelemetry-exporter-otlp into the environment of {command[0]})"
        )
    return [str(launcher), *command]


def _run_setup_command(command: list[str], cwd: Path, log: IO[bytes], deadline: float, total_s: float) -> None:
    shown = shlex.join(command)
    resolved = resolve_command(command, cwd)
    log.write(f"--- perfagents setup: {shown}\n".encode())
    log.flush()
    with tempfile.TemporaryFile() as err:  # stderr apart, for the one-line error
        try:
            process = spawn(resolved, cwd=cwd, env=dict(os.environ), stdout=log, stderr=err)
        except OSError as exc:
            raise SpecError(f"setup command {shown!r} cannot start: {exc.strerror or exc}") from exc
        rc: int | None = None
        try:
            rc = process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            terminate_tree(process, SETUP_KILL_GRACE_S)
        except BaseException:
            terminate_tree(process, SETUP_KILL_GRACE_S)
            raise
        err.seek(0)
        stderr = err.read()
    log.write(stderr)
    log.flush()
    last = last_line(stderr.decode(errors="replace"))
    if rc is None:
        raise SpecError(f"setup command {shown!r} timed out (setup budget {total_s:g} s): {last}")
    if rc != 0:
        raise SpecError(f"setup command {shown!r} failed with exit {rc}: {last}")


def _start_cwd(spec: TargetSpec) -> Path:
    assert spec.start is not None
    cwd = (spec.spec_dir / spec.start.cwd).resolve()
    if not cwd.is_dir():
        raise SpecError(f"start.cwd {spec.start.cwd!r} is not a folder ({cwd})")
    return cwd


def _read_tail(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(offset, size - LOG_TAIL_BYTES))
        return f.read().decode(errors="replace")
