"""Sharing one store: runs in several processes write it at once, and readers read while they write.

Real processes on one DuckDB file (tests/tasks/store/writer.py writes the way a run does);
the store holds the file only per read or transaction and waits, bounded, for another's lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.errors import StoreLockedError
from tasks.store import Store

ROOT = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("writer.py")


def start_writer(path: Path, name: str, runs: int, samples: int = 500, pause_s: float = 0.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(WRITER), str(path), name, str(runs), str(samples), str(pause_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_processes_write_runs_into_one_store_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    Store(path)  # created and migrated once, as the first run would
    # 0.3 s between runs: in a fresh-clone CI beside the xdist session one writer started 0.8 s
    # after the other and found it done (its 6 runs took 0.7 s): the overlap needs room
    writers = [start_writer(path, name, runs=6, pause_s=0.3) for name in ("left", "right")]
    try:
        left, right = (finish(w) for w in writers)
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    assert max(left["first"], right["first"]) < min(left["last"], right["last"])  # they did overlap
    with Store(path, read_only=True) as st:
        runs = st.rows("SELECT split_part(run_id, '-', 1) AS writer, count(*) AS n, "
                       "count(*) FILTER (WHERE status = 'budget_exhausted') AS done FROM runs GROUP BY 1 ORDER BY 1")
        samples = st.rows("SELECT count(*) AS n FROM samples")[0]["n"]
        stats = st.rows("SELECT count(*) AS n FROM endpoint_stats")[0]["n"]
    assert runs == [{"writer": "left", "n": 6, "done": 6}, {"writer": "right", "n": 6, "done": 6}]
    assert samples == 2 * 6 * 2 * 500 and stats == 2 * 6 * 2 * 2  # every window whole (home + __total__)


def test_a_reader_reads_while_a_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    Store(path)
    # 0.2 s between runs: a busy machine (xdist beside it) once starved the reader of every
    # gap in a writer that never paused (fewer than 3 counts seen between 1 and 9); a run's writes are
    # seconds apart
    writer = start_writer(path, "solo", runs=10, pause_s=0.2)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        reader = Store(path, read_only=True)
        seen: list[tuple[int, int]] = []
        deadline = time.monotonic() + 60
        while writer.poll() is None and time.monotonic() < deadline:
            with reader.session():  # one consistent view: the runs and their windows' samples
                runs = reader.rows("SELECT count(*) AS n FROM runs")[0]["n"]
                samples = reader.rows("SELECT count(*) AS n FROM samples")[0]["n"]
            seen.append((runs, samples))
            time.sleep(0.02)  # a poller, as the dashboard is (a reader in a tight loop leaves writers no gap)
        result = finish(writer)
    finally:
        if writer.poll() is None:
            writer.kill()
    counts = [runs for runs, _ in seen]
    assert counts == sorted(counts)  # never a run that vanished
    assert len({c for c in counts if 1 <= c < 10}) >= 3  # read between the writer's transactions
    assert all(samples % 500 == 0 for _, samples in seen)  # never half a window's samples
    assert Store(path, read_only=True).rows("SELECT count(*) AS n FROM runs")[0]["n"] == 10
    assert result["opens"] > 10  # the writer opened the file per transaction


def test_an_open_waits_for_a_held_store_and_gives_up_after_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    Store(path)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"con = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(1.5)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreLockedError, match="held by another process"):
            Store(path, read_only=True, lock_timeout_s=0.3)
        assert 0.3 <= time.monotonic() - started < 1.2
        patient = Store(path, lock_timeout_s=20)  # waits until the holder exits
        assert max(patient.waits.waits) > 0.3 and patient.waits.retries > 0
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_turns_pass_between_threads_of_one_process_in_either_mode(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "store.duckdb"
    writer, reader = Store(path), Store(path, read_only=True)
    order: list[str] = []
    with writer.session():
        thread = threading.Thread(target=lambda: order.append(f"read {reader.rows('SELECT 1 AS n')[0]['n']}"))
        thread.start()
        time.sleep(0.3)
        order.append("write done")  # the reader waited for the writer's turn (not an error)
    thread.join(timeout=20)
    assert order == ["write done", "read 1"]
    assert reader.waits.retries == 0 and max(reader.waits.waits) >= 0.25
