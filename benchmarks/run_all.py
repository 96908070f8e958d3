"""Run every benchmark script in this folder, one after the other, each within a timeout.

    .venv/bin/python benchmarks/run_all.py [--timeout 330] [--only NAME ...]   (or: make bench)

Every ``benchmarks/*.py`` except this file (and files starting with ``_``) is a benchmark;
each runs as ``<this python> benchmarks/<name>.py`` in its own process group with its
output streamed as it comes. A script that overruns its timeout gets SIGTERM (so it can
stop what it started), then SIGKILL for its whole group after ``KILL_GRACE_S``. A summary
table closes the run; the exit code is 1 when any script failed or timed out.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TIMEOUT_S = 330.0  # each script is meant to finish within 5 minutes
KILL_GRACE_S = 20.0  # SIGTERM -> SIGKILL: time to stop targets and browsers


def find_benchmarks(folder: Path = HERE) -> list[Path]:
    """The benchmark scripts of ``folder``, by name."""
    me = Path(__file__).resolve()
    return sorted(p for p in folder.glob("*.py") if p.resolve() != me and not p.name.startswith("_"))


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script's group, SIGKILL it if it is still there after KILL_GRACE_S."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(KILL_GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def declared_timeout(script: Path) -> float | None:
    """A script that needs longer than the default says so in a line ``RUN_ALL_TIMEOUT_S = <seconds>``."""
    found = re.search(r"^RUN_ALL_TIMEOUT_S = (\d+(?:\.\d+)?)", script.read_text(), re.MULTILINE)
    return float(found.group(1)) if found else None


def run_benchmark(script: Path, timeout_s: float) -> tuple[str, float]:
    """Run one script to completion or timeout; (status, seconds)."""
    timeout_s = max(timeout_s, declared_timeout(script) or 0.0)
    print(f"\n=== {script.name} (timeout {timeout_s:.0f} s) ===", flush=True)
    t0 = time.monotonic()
    process = subprocess.Popen([sys.executable, str(script)], cwd=REPO, start_new_session=True)
    try:
        code = process.wait(timeout_s)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        stop_group(process)
        status = f"timed out after {timeout_s:.0f} s"
    except BaseException:  # Ctrl-C: do not leave the script running
        stop_group(process)
        raise
    return status, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per script")
    p.add_argument("--only", nargs="*", default=None, help="script names to run (without .py)")
    args = p.parse_args(argv)
    scripts = [s for s in find_benchmarks() if args.only is None or s.stem in args.only]
    if not scripts:
        print("no benchmark scripts to run", file=sys.stderr)
        return 2
    results = [(script.name, *run_benchmark(script, args.timeout)) for script in scripts]
    print("\n=== summary ===")
    for name, status, seconds in results:
        print(f"{name:<28} {status:<28} {seconds:6.0f} s")
    return 0 if all(status == "ok" for _, status, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
