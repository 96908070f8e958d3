"""Operating-system side of a target: ports, programs, spawning and killing process trees.

Every child is spawned in its own session (one process group, so one signal reaches its
whole tree) and with ``PR_SET_PDEATHSIG=SIGKILL``, so it dies even if the toolkit is
SIGKILLed. The kernel sends that signal when the *thread* that forked the child exits, so
children are forked from one long-lived spawner thread, never from the caller's thread (a
Prefect task thread would otherwise kill the target when it ends). The signal reaches the
direct child only: its own children (gunicorn workers ...) rely on their parent's death
checks if the toolkit is SIGKILLed; ``terminate_tree`` kills them all on a normal stop.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil

from tasks.errors import SpecError

PYTHON_NAMES = ("python", "python3")  # run with the toolkit's own interpreter
KILL_WAIT_S = 5.0  # after SIGKILL, how long to wait for the tree to disappear
STOP_POLL_S = 0.05
PR_SET_PDEATHSIG = 1

_LIBC = ctypes.CDLL(None, use_errno=True)
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfagents-spawner")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller races for it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether nothing listens on (or holds) ``port`` on 127.0.0.1."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def resolve_command(command: list[str], cwd: Path) -> list[str]:
    """Make the program of ``command`` an absolute path.

    ``python``/``python3`` -> ``sys.executable`` (the toolkit's venv); a path with a slash is
    used as given (relative to ``cwd``), so a target can run in its own virtualenv; a bare
    name is looked up in the toolkit's venv ``bin`` first, then on PATH.
    """
    program, args = command[0], command[1:]
    if program in PYTHON_NAMES:
        return [sys.executable, *args]
    if "/" in program:
        path = Path(os.path.normpath(cwd / program))  # no resolve(): keep venv symlinks
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SpecError(f"program {program!r} not found or not executable ({path})")
        return [str(path), *args]
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    found = shutil.which(program, path=search)
    if found is None:
        raise SpecError(f"program {program!r} not found in the toolkit's virtualenv or on PATH")
    return [found, *args]


def spawn(
    command: list[str], *, cwd: Path, env: dict[str, str], stdout: Any, stderr: Any
) -> subprocess.Popen[bytes]:
    """Popen from the long-lived spawner thread, in a new session, dying with the toolkit."""
    parent = os.getpid()

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=_die_with_parent(parent),
        )

    future = _SPAWNER.submit(popen)
    try:
        return future.result()
    except BaseException:  # Ctrl-C while the spawner forks: do not leave the child behind
        if not future.cancel():
            with suppress(Exception):
                terminate_tree(future.result(timeout=KILL_WAIT_S), 0)
        raise


def popen_dying_with_us(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(*args, **kwargs)`` from the spawner thread, with PDEATHSIG: for the
    children other libraries start for us (Prefect's temporary API server), which would
    otherwise outlive a killed run."""
    kwargs["preexec_fn"] = _die_with_parent(os.getpid())
    popen: Callable[..., subprocess.Popen[Any]] = subprocess.Popen
    return _SPAWNER.submit(popen, *args, **kwargs).result()


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the toolkit died before prctl took effect
            os._exit(1)

    return preexec


def terminate_tree(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the group and every tree member, then SIGKILL whatever survives ``timeout_s``."""
    pgid = process.pid  # a session leader: its pgid is its pid
    found = [*(tree(process.pid) if process.poll() is None else []), *_group(pgid)]
    others = list({p.pid: p for p in found if p.pid != process.pid}.values())
    signal_group(pgid, signal.SIGTERM)
    for proc in others:  # also those that left the group (setsid)
        with suppress(psutil.Error):
            proc.terminate()
    deadline = time.monotonic() + timeout_s
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    alive = _wait_gone(others, deadline)
    if process.returncode is None or alive:
        signal_group(pgid, signal.SIGKILL)
        for proc in alive:
            with suppress(psutil.Error):
                proc.kill()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=KILL_WAIT_S)
        _wait_gone(alive, time.monotonic() + KILL_WAIT_S)


def tree(root: int) -> list[psutil.Process]:
    """``root`` and all its descendants now ([] when ``root`` is gone)."""
    try:
        proc = psutil.Process(root)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def listener_pid(port: int) -> int | None:
    """The topmost process listening on ``port`` (gunicorn: the master, not a worker)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    pids = {
        c.pid for c in conns
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }
    for pid in sorted(pids):
        with suppress(psutil.Error):
            if psutil.Process(pid).ppid() not in pids:
                return pid
    return min(pids) if pids else None


def _wait_gone(procs: list[psutil.Process], deadline: float) -> list[psutil.Process]:
    """Wait until every process exited (a zombie counts as gone); return the survivors."""
    while True:
        alive = [p for p in procs if not _gone(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(STOP_POLL_S)


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid``; a group already gone (or not ours) is left be."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group(pgid: int) -> list[psutil.Process]:
    """Every live process in process group ``pgid`` (it outlives its leader)."""
    members = []
    for pid in psutil.pids():
        with suppress(OSError, psutil.Error):
            if os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
    return members


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def database_pids(url: str | None, default_port: int = 5432) -> list[int]:
    """The process tree of a server listening on loopback at ``url``'s port (a database, the
    Prefect API): [] for SQLite, remote hosts, or nothing listening."""
    from urllib.parse import urlsplit

    from tasks.db.url import LOOPBACK_NAMES, url_scheme

    if not url or "://" not in url or url_scheme(url) == "sqlite":
        return []
    try:
        parts = urlsplit(url)
        port = parts.port or default_port
    except ValueError:
        return []
    if (parts.hostname or "localhost") not in LOOPBACK_NAMES:
        return []
    root = listener_pid(port)
    return [p.pid for p in tree(root)] if root is not None else []
