"""Whose turn it is to open the store: a cross-process lock taken before DuckDB's own.

Retrying ``duckdb.connect`` until the file is free works (tasks/store/lock.py) but wastes the
gaps: each failed attempt costs a DuckDB instance start, and a waiter asleep in its backoff
misses the moment the holder closes, so with two writers and a reader most of the time went to
nobody (benchmarks/store_sharing.py measured 0.34x a lone writer's windows per second). So every
perfagents process first takes its turn on a small lock file with ``flock``, which costs a
system call to try: writers exclusively, readers shared (DuckDB allows many read-only openers).
A waiter polls every 1-5 ms (jittered), so a turn passes on within milliseconds of the close.
DuckDB's own lock stays the guard against everything else (a `duckdb` shell a user left open):
the retry behind this one handles it.

Within one process, sessions of any threads share the process's turn (DuckDB itself shares one
database instance between them); a thread wanting the other mode waits for the process's turn
to end. The lock file lives in the temp folder, named by a hash of the store's real path, so
that nothing is ever written next to a store that is only read.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FIRST_POLL_S = 0.001
MAX_POLL_S = 0.005


@dataclass
class _Turn:
    fd: int
    shared: bool
    count: int = 0


_turns: dict[str, _Turn] = {}
_guard = threading.Lock()


def _forget_in_child() -> None:
    """A forked child holds no turn (its copies of the parent's lock fds would keep the parent's turn alive)."""
    for held in _turns.values():
        try:
            os.close(held.fd)
        except OSError:
            pass
    _turns.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def lock_file(store: Path) -> Path:
    """The store's turn lock (in the temp folder, one per real path)."""
    key = hashlib.sha256(str(Path(store).resolve()).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "perfagents-store-locks"
    folder.mkdir(mode=0o777, exist_ok=True)
    return folder / f"{key}.lock"


def _try(key: str, path: Path, shared: bool) -> bool:
    """Take (or join) this process's turn without waiting; False when another holds it."""
    with _guard:
        turn = _turns.get(key)
        if turn is not None:
            if turn.shared != shared:
                return False
            turn.count += 1
            return True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        _turns[key] = _Turn(fd, shared, 1)
        return True


def _release(key: str, last_out: Callable[[], None] | None) -> None:
    with _guard:
        turn = _turns[key]
        turn.count -= 1
        if turn.count == 0:
            try:
                if last_out is not None:  # no thread of this process can join the turn meanwhile
                    last_out()
            finally:
                del _turns[key]
                fcntl.flock(turn.fd, fcntl.LOCK_UN)
                os.close(turn.fd)


@contextmanager
def turn(store: Path, *, shared: bool, timeout_s: float,
         last_out: Callable[[], None] | None = None) -> Iterator[float | None]:
    """Hold the store's turn for the block; yields the seconds waited, or None when the wait
    passed ``timeout_s`` (the caller then tries DuckDB's own lock, which names the holder).
    ``last_out`` runs when this process's last holder leaves, before the turn passes on (a
    writer's checkpoint: tasks/store/checkpoint.py)."""
    try:
        path = lock_file(store)
    except OSError:  # no temp folder to lock in: DuckDB's own lock is all there is (and no last_out)
        yield 0.0
        return
    key, start, delay = str(path), time.monotonic(), FIRST_POLL_S
    while not _try(key, path, shared):
        if time.monotonic() - start >= timeout_s:
            yield None
            return
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 1.5, MAX_POLL_S)
    try:
        yield time.monotonic() - start
    finally:
        _release(key, last_out)
