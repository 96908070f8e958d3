"""The store never checkpoints in place: commits go to the WAL, which a copy folds in (tasks/store/checkpoint.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tasks.store import checkpoint
from tasks.store.checkpoint import checkpoint_by_copy, wal_path
from tasks.store.connection import Connection


def write(store: Connection, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with store.transaction() as con:
            con.execute("INSERT INTO t SELECT range + ?, repeat('x', 200) FROM range(500)", [i * 1000])


def fresh(path: Path) -> Connection:
    store = Connection(path)
    with store.transaction() as con:
        con.execute("CREATE TABLE t (id BIGINT, payload VARCHAR)")
    return store


def count(path: Path) -> int:
    return Connection(path, read_only=True).rows("SELECT count(*) AS n FROM t")[0]["n"]


def test_a_commit_goes_to_the_wal_and_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    store = fresh(path)
    before = path.read_bytes()
    write(store, 3)
    assert path.read_bytes() == before  # no checkpoint in place, by a close or a commit
    assert wal_path(path).stat().st_size > 0
    assert count(path) == 1500  # a reader replays the WAL


def test_past_its_bound_the_wal_is_folded_in_by_a_file_renamed_over_the_store(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "WAL_MIN_BYTES", 64 << 10)
    path = tmp_path / "store.duckdb"
    store = fresh(path)
    with open(path, "rb") as original:
        before = original.read()
        write(store, 20)
        assert os.fstat(original.fileno()).st_nlink == 0  # replaced whole, by a rename ...
        original.seek(0)
        assert original.read() == before  # ... and never written in place
    assert not wal_path(path).exists() or wal_path(path).stat().st_size <= checkpoint.wal_limit(path)
    assert count(path) == 20 * 500
    assert not path.with_name("store.duckdb.checkpoint").exists()


def test_a_wal_left_behind_by_a_checkpoint_killed_after_its_rename_is_dropped_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    store = fresh(path)
    write(store, 4)
    stale = wal_path(path).read_bytes()
    assert checkpoint_by_copy(path)
    wal_path(path).write_bytes(stale)  # as if killed between the rename and the WAL's removal
    assert count(path) == 4 * 500  # the WAL's entries are in the file once, not twice
    assert not wal_path(path).exists()
    write(Connection(path), 1, start=4)
    assert count(path) == 5 * 500


def test_a_checkpoint_killed_before_its_rename_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    store = fresh(path)
    write(store, 3)
    path.with_name("store.duckdb.checkpoint").write_bytes(b"half a copy")
    path.with_name("store.duckdb.checkpoint.wal").write_bytes(b"half a wal")
    assert count(path) == 1500
    assert checkpoint_by_copy(path)  # the next checkpoint writes over the leftovers
    assert count(path) == 1500
    assert not wal_path(path).exists()


def test_a_checkpoint_waits_while_another_process_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    write(fresh(path), 2)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; "
                               f"con = duckdb.connect({str(path)!r}, read_only=True); print('held', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (path.read_bytes(), wal_path(path).read_bytes())
        assert checkpoint_by_copy(path) is False
        assert (path.read_bytes(), wal_path(path).read_bytes()) == before
    finally:
        holder.communicate("", timeout=30)
    assert checkpoint_by_copy(path)
    assert count(path) == 1000


def test_a_foreign_plain_open_still_reads_and_writes_the_store(tmp_path: Path) -> None:
    """Tools outside perfagents (the duckdb shell, a notebook) open the store as DuckDB always did."""
    path = tmp_path / "store.duckdb"
    write(fresh(path), 2)
    con = duckdb.connect(str(path))
    try:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 1000
        con.execute("INSERT INTO t VALUES (-1, 'foreign')")
    finally:
        con.close()
    assert not wal_path(path).exists()  # its close checkpointed in place, DuckDB's default
    assert count(path) == 1001
