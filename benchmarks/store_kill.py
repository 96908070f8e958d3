"""Does a SIGKILL corrupt the store, or lose a commit? In place against by copy, measured.

    .venv/bin/python benchmarks/store_kill.py [--kills 150] [--json PATH]

A writer process commits transactions to a DuckDB store in a loop, the way a run writes its
windows (open, insert 2,000 request samples, commit, close), and appends each committed
transaction's number to a log it fsyncs. After a random 0.3-1.2 s (past its start) it is
SIGKILLed; then the store is opened and checked: does it open at all (a torn checkpoint fails
with "Corrupt database file: computed checksum ..."), and does it hold exactly the logged
transactions (plus at most the one committed before its log line)? Two ways of writing:

- **in place**: ``duckdb.connect`` per transaction, DuckDB's default close, which checkpoints
  the WAL into the file in place (perfagents before tasks/store/checkpoint.py);
- **by copy**: the store's own ``Connection`` (commits to the WAL; the WAL folded in on a
  copy renamed over the file), with the WAL bound lowered to 256 KiB so that the kills also
  land in the checkpoints by copy (at the shipped 4 MiB they would be ~16x rarer).

Prints per way: kills, stores that no longer opened (the store is then started afresh), commits
lost or doubled, and transactions per second while the writer lived, with the 95 % upper bound
(Clopper-Pearson) on the corruption rate.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from scipy.stats import beta

ROWS = 2000
RUN_ALL_TIMEOUT_S = 1200  # ~1.7 s a kill: 150 kills of each way take ~9 minutes

WRITER = Path(__file__).with_name("_store_writer.py")


def check(way: str, path: Path) -> tuple[int, int]:
    """(transactions, rows) in the store, opened the way the writer writes it."""
    sql = "SELECT count(DISTINCT id // 10000), count(*) FROM t"
    if way == "copy":
        from tasks.store.connection import Connection
        row = Connection(path).rows(sql.replace("count(*)", "count(*) AS n").replace("10000)", "10000) AS tx"))[0]
        return row["tx"], row["n"]
    con = duckdb.connect(str(path))
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def logged(log: Path) -> int:
    """Transactions the writer logged as committed (they are numbered from 0)."""
    if not log.exists():
        return 0
    return max(map(int, log.read_text().split()), default=-1) + 1


def campaign(way: str, kills: int, folder: Path, seed: int) -> dict:
    rng = random.Random(seed)
    store_dir = folder / way
    corrupt, wrong, alive_s, commits, errors = 0, 0, 0.0, 0, []

    def fresh() -> None:
        shutil.rmtree(store_dir, ignore_errors=True)
        store_dir.mkdir()

    fresh()
    for _ in range(kills):
        path, log = store_dir / "store.duckdb", store_dir / "log"
        before = logged(log)
        proc = subprocess.Popen([sys.executable, str(WRITER), way, str(path), str(log), str(ROWS)], cwd=Path(__file__).parents[1],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise SystemExit(f"the {way} writer did not start: {proc.stderr.read()[-500:]}")
        life = rng.uniform(0.3, 1.2)
        time.sleep(life)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        alive_s += life
        done = logged(log)
        commits += done - before
        try:
            tx, rows = check(way, path)
        except (duckdb.Error, OSError) as exc:
            corrupt += 1
            errors.append(str(exc).splitlines()[0][:160])
            fresh()
            continue
        if not done <= tx <= done + 1 or rows != ROWS * tx:
            wrong += 1
            errors.append(f"logged {done}, store holds {tx} transactions in {rows} rows")
    high = float(beta.ppf(0.975, corrupt + 1, kills - corrupt)) if corrupt < kills else 1.0
    return {"way": way, "kills": kills, "corrupt": corrupt, "corrupt_rate_upper95": round(high, 4),
            "wrong_contents": wrong, "tx_per_s": round(commits / alive_s, 1), "errors": errors[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.kills < 1:
        parser.error("--kills must be >= 1")
    print(f"duckdb {duckdb.__version__}; {args.kills} SIGKILLs per way", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="perfagents-store-kill-") as tmp:
        for way in ("in-place", "copy"):
            result = campaign(way, args.kills, Path(tmp), args.seed)
            results.append(result)
            print(f"{way:>8}: {result['corrupt']}/{result['kills']} stores no longer opened "
                  f"(rate <= {result['corrupt_rate_upper95']:.1%} at 95 %), {result['wrong_contents']} held other "
                  f"than the logged commits; {result['tx_per_s']} transactions/s", flush=True)
            for error in result["errors"]:
                print(f"          {error}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
