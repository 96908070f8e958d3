"""SIGKILL a real quick-win run of the reference shop at many points, then `perfagents revert`.

    .venv/bin/python benchmarks/kill_campaign.py [--kills 20] [--seed 7] [--json PATH]

Each kill is one `perfagents run` of the e-commerce reference (seeded smaller, 6 s windows, so a
change is tried within a minute or two) in a fresh folder and store, SIGKILLed: its own
process (only it: what it started must die with it), as a crash or an OOM kill would end it:

- a quarter of the kills land exactly between journaling a change and applying it, a quarter
  between applying it and marking it applied (the failpoints of tasks/changes/journal.py,
  ``PERFAGENTS_CRASH_AT``: the run kills itself there);
- the rest at a random moment of the run (uniform over the first ``--max-s`` seconds).

Then `perfagents revert --store` and the checks:

- restored: revert exits 0, a second revert has nothing to revert, and no ``perfagents_*`` index
  is left in any database the run worked on (the shop's schema is the seeded one; its knobs are
  process environment and die with the target);
- store intact: the store opens, every table reads, and no change is left planned or applied;
- orphans: no process the killed run started (target, Locust, agents) is alive 10 s later.

Prints one line per kill and ``killed N, restored N, store intact N, orphans N``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_HOME", str(REPO / ".perfagents" / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # as `make` sets it: a new home migrates first
PERFAGENTS = Path(sys.executable).with_name("perfagents")
SHOP = REPO / "reference_workflows" / "ecommerce"
FAILPOINTS = ("after_journal", "after_apply")
RUN_TIMEOUT_S = 420
ORPHAN_WAIT_S = 10.0


def write_spec(folder: Path) -> Path:
    """The reference spec made short: a smaller seed, 6 s windows, the database agent only."""
    spec = yaml.safe_load((SHOP / "target.yaml").read_text())
    spec["start"]["cwd"] = str(REPO)
    spec["setup"] = [[*spec["setup"][0], "--scale", "0.3"]]
    spec["load"].update(locustfile=str(SHOP / "locustfile.py"), duration_s=6, warmup_s=1)
    spec.pop("frontend", None)
    spec["budget_constraints"] = {"minutes": 5, "iterations": 3}
    path = folder / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def descendants(pid: int) -> list[int]:
    """The run's process tree now (targets and Locust run in sessions of their own: a process
    group would miss them)."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _command(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:160]
    except psutil.NoSuchProcess:
        return "(gone)"


def leftover_indexes(folder: Path) -> list[str]:
    names = []
    for db in folder.glob("state/work/*/shop.db"):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            names += [r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'perfagents%'")]
        finally:
            con.close()
    return names


def store_intact(store: Path) -> tuple[bool, str]:
    from tasks.store import Store

    try:
        with Store(store, read_only=True) as st:
            tables = [r["table_name"] for r in st.rows("SELECT table_name FROM information_schema.tables")]
            for table in tables:
                st.rows(f'SELECT count(*) AS n FROM "{table}"')
            left = st.open_changes()
    except Exception as exc:  # noqa: BLE001 - what a broken store raises is the finding
        return False, f"{type(exc).__name__}: {exc}"
    return not left, f"{len(tables)} tables read; {len(left)} change(s) open"


def one_kill(folder: Path, *, failpoint: str | None, at_s: float | None) -> dict[str, Any]:
    spec, store = write_spec(folder), folder / "state" / "store.duckdb"
    # safety, not timing, is measured here: windows beside other work are accepted (else on a busy
    # machine the gate re-measures until the budget ends the run before any change is applied,
    # and a failpoint kill never fires)
    env = {"PERFAGENTS_MAX_FOREIGN_CORES": "2", **os.environ, "PERFAGENTS_AGENTS": "database"}
    if failpoint:
        env["PERFAGENTS_CRASH_AT"] = failpoint
    t0 = time.monotonic()
    run = subprocess.Popen([str(PERFAGENTS), "run", str(spec), "--store", str(store), "--quiet"], cwd=folder,
                           env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + (at_s if at_s is not None else RUN_TIMEOUT_S)
    seen: set[int] = set()  # every process the run started so far (target, Locust, agents)
    next_look = 0.0
    while run.poll() is None and time.monotonic() < deadline:
        if time.monotonic() >= next_look:
            seen.update(descendants(run.pid))
            next_look = time.monotonic() + 0.5
        time.sleep(0.05)
    seen.update(descendants(run.pid))
    killed_by = "failpoint" if run.poll() == -signal.SIGKILL else "finished" if run.poll() is not None else "us"
    if run.poll() is None:
        os.kill(run.pid, signal.SIGKILL)  # the run's process alone: what it started must die with it
    run.wait(30)
    stderr_tail = " ".join(run.stderr.read().decode(errors="replace").split())[-300:]  # type: ignore[union-attr]
    run.stderr.close()  # type: ignore[union-attr]
    elapsed = time.monotonic() - t0
    time.sleep(ORPHAN_WAIT_S)
    orphans = [p for p in seen - {run.pid} if _alive(p)]
    orphan_commands = [_command(p) for p in orphans]
    for pid in orphans:  # leave nothing behind for the next kill (they are counted)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    revert = subprocess.run([str(PERFAGENTS), "revert", "--store", str(store)], cwd=folder,
                            capture_output=True, text=True, timeout=120) if store.exists() else None
    again = subprocess.run([str(PERFAGENTS), "revert", "--store", str(store)], cwd=folder,
                           capture_output=True, text=True, timeout=120) if store.exists() else None
    indexes = leftover_indexes(folder)
    restored = not indexes and (revert is None or (revert.returncode == 0 and again is not None
                                                   and "nothing to revert" in again.stdout))
    intact, how = store_intact(store) if store.exists() else (True, "no store yet")
    return {"failpoint": failpoint, "at_s": at_s, "killed_after_s": round(elapsed, 1), "killed_by": killed_by,
            "restored": restored, "leftover_indexes": indexes,
            "revert": None if revert is None else " ".join(revert.stdout.split())[-200:],
            "store_intact": intact, "store": how, "orphans": len(orphans), "orphan_commands": orphan_commands,
            "run_stderr": stderr_tail}


def plan(kills: int, max_s: float, rng: random.Random) -> list[tuple[str | None, float | None]]:
    per_point = kills // 4
    points: list[tuple[str | None, float | None]] = [(fp, None) for fp in FAILPOINTS for _ in range(per_point)]
    points += [(None, round(rng.uniform(2.0, max_s), 1)) for _ in range(kills - len(points))]
    rng.shuffle(points)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--max-s", type=float, default=120.0, help="random kills land in the first this many seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.kills < 1 or args.max_s <= 2:
        parser.error("--kills must be at least 1 and --max-s above 2")
    rows = []
    for i, (failpoint, at_s) in enumerate(plan(args.kills, args.max_s, random.Random(args.seed)), 1):
        with tempfile.TemporaryDirectory(prefix="perfagents-kill-") as tmp:
            row = one_kill(Path(tmp), failpoint=failpoint, at_s=at_s)
        rows.append(row)
        where = failpoint or f"t={at_s}s"
        print(f"{i:>2} {where:<14} killed after {row['killed_after_s']:>5} s ({row['killed_by']}): "
              f"restored={row['restored']} store_intact={row['store_intact']} orphans={row['orphans']} "
              f"| {row['revert'] or 'no store yet'}", flush=True)
    summary = {"killed": len(rows), "restored": sum(r["restored"] for r in rows),
               "store_intact": sum(r["store_intact"] for r in rows), "orphans": sum(r["orphans"] for r in rows),
               "failpoint_kills": sum(r["killed_by"] == "failpoint" for r in rows)}
    print(f"killed {summary['killed']}, restored {summary['restored']}, store intact {summary['store_intact']}, "
          f"orphans {summary['orphans']}")
    if args.json:
        args.json.write_text(json.dumps({**summary, "kills": rows}, indent=2))
    ok = summary["restored"] == summary["store_intact"] == summary["killed"] and summary["orphans"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
