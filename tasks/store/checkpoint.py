"""Checkpoints that a killed process cannot tear: commits go to the WAL, the file is replaced whole.

A DuckDB checkpoint rewrites blocks of the database file in place, and a write the kernel cuts
short (a SIGKILL lands between the pages of a ``pwrite``) leaves a block whose checksum no
longer matches: "Corrupt database file: computed checksum ... in block at location 12288", and
the store, with the journal ``perfagents revert`` needs, cannot be opened again. DuckDB 2.0.1
did this once in CI (a run SIGKILLed right after it applied a change) and in 1 of 150 SIGKILLs
of an ad hoc loop that opened, wrote and closed (docs/store.md; benchmarks/store_kill.py).

So a perfagents process never checkpoints the store in place. Its read-write opens carry
``WRITER_CONFIG`` and ``PRAGMA disable_checkpoint_on_shutdown``: a commit appends to the
``.wal`` file (which DuckDB checksums entry by entry and replays at the next open) and a close
writes nothing. When the WAL has grown past ``wal_limit`` (replaying it costs
each open time), ``checkpoint_by_copy`` folds it in on a copy: copy the file and its WAL,
checkpoint the copy, fsync it, rename it over the store (atomic), then delete the WAL. A kill
before the rename leaves the store as it was; a kill after it leaves a WAL older than the file,
which DuckDB refuses ("the WAL checkpoint iteration does not match"); its entries are already in
the file, so ``drop_stale_wal`` removes it and the open goes on.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import duckdb

WRITER_CONFIG: dict[str, str | bool | int | float | list[str]] = {  # duckdb.connect's config type
    "checkpoint_threshold": "1TB",  # never checkpoint automatically after a commit
    "auto_checkpoint_skip_wal_threshold": "1000000000000",  # a large commit goes to the WAL too, not straight into the file
}
NO_CHECKPOINT_ON_CLOSE = "PRAGMA disable_checkpoint_on_shutdown"
WAL_MIN_BYTES = 4 << 20  # replaying 4 MiB of WAL costs an open ~20 ms on this machine
WAL_MAX_BYTES = 32 << 20
_STALE_WAL = "wal checkpoint iteration does not match"


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def wal_limit(path: Path) -> int:
    """The WAL size past which the store is checkpointed: a quarter of the file, within bounds, so
    that the copying stays a fixed share of what was written."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return min(WAL_MAX_BYTES, max(WAL_MIN_BYTES, size // 4))


def needs_checkpoint(path: Path) -> bool:
    try:
        return wal_path(path).stat().st_size > wal_limit(path)
    except OSError:
        return False


def checkpoint_by_copy(path: Path) -> bool:
    """Fold the WAL into the store without writing the store in place; False when another
    process holds DuckDB's lock on it (the WAL then waits for the next writer). The caller holds
    the store's write turn (tasks/store/turns.py) and no connection to the store."""
    wal = wal_path(path)
    if not wal.exists():
        return True
    copy = path.with_name(path.name + ".checkpoint")
    copy_wal = wal_path(copy)
    fd = os.open(path, os.O_RDWR)
    try:
        try:  # DuckDB's own lock (a POSIX write lock on the whole file): no one opens the store meanwhile
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        copy_wal.unlink(missing_ok=True)  # left by a checkpoint killed before its copy's checkpoint
        _copy_fd(fd, copy)  # from the locked fd: closing any other fd of the file would drop the lock
        with open(wal, "rb") as src:
            _copy_fd(src.fileno(), copy_wal)
        con = duckdb.connect(str(copy))
        try:
            con.execute("CHECKPOINT")
        finally:
            con.close()
        _fsync(copy)
        os.replace(copy, path)
        _fsync(path.parent)
        wal.unlink(missing_ok=True)  # a kill before this leaves a stale WAL: drop_stale_wal
        return True
    finally:
        os.close(fd)


def drop_stale_wal(path: Path, exc: BaseException) -> bool:
    """When an open failed because the WAL predates the file (a checkpoint by copy killed between
    its rename and the WAL's removal), remove the WAL and say so; else False."""
    if _STALE_WAL not in str(exc).lower():
        return False
    try:
        wal_path(path).unlink(missing_ok=True)
    except OSError:
        return False
    return True


def _copy_fd(src: int, dst: Path) -> None:
    with open(dst, "wb") as out:
        size, sent = os.fstat(src).st_size, 0
        while sent < size:
            step = os.sendfile(out.fileno(), src, sent, size - sent)
            if step == 0:
                break
            sent += step
        out.flush()
        os.fsync(out.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
