"""Lighthouse's performance audits for the frontend agent, when a ``lighthouse`` binary is found.

Optional: without Lighthouse the agent still measures every page itself. Lighthouse runs as a
bounded subprocess (``npm install lighthouse`` puts it in node_modules/.bin) driving the same
Chromium through ``CHROME_PATH``; its launched browser is stopped with it on a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil

from tasks.target.process import signal_group

LIGHTHOUSE_ENV = "PERFAGENTS_LIGHTHOUSE"  # a lighthouse binary; "off" (or empty) disables it
LIGHTHOUSE_INSTALL = "npm install lighthouse"
LIGHTHOUSE_TIMEOUT_S = 90.0  # one page (Lighthouse 12 took ~11-14 s a page here)
LIGHTHOUSE_MIN_S = 15.0  # do not start a run with less time than this left in the window
AUDIT_PASS_SCORE = 0.9  # audits scoring below this are listed
METRIC_AUDITS = ("first-contentful-paint", "largest-contentful-paint", "total-blocking-time",
                 "cumulative-layout-shift", "speed-index", "interactive", "server-response-time")


def find_lighthouse(search_dirs: Iterable[Path] = ()) -> str | None:
    """The lighthouse binary (env override, PATH, then node_modules/.bin), or None."""
    if LIGHTHOUSE_ENV in os.environ:
        path = os.environ[LIGHTHOUSE_ENV]
        return path if path not in ("", "off") and Path(path).is_file() else None
    found = shutil.which("lighthouse")
    if found:
        return found
    for folder in search_dirs:
        candidate = Path(folder) / "node_modules" / ".bin" / "lighthouse"
        if candidate.is_file():
            return str(candidate)
    return None


def run_lighthouse_pages(urls: dict[str, str], chromium: str, chrome_args: list[str],
                         remaining: Callable[[], float], *, search_dirs: Iterable[Path] = (),
                         stopped: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Audit each page once while the window leaves time; a summary per page path."""
    binary = find_lighthouse(search_dirs)
    if binary is None:
        return {"skipped": f"lighthouse not installed (optional: `{LIGHTHOUSE_INSTALL}`)"}
    out: dict[str, Any] = {"binary": binary, "pages": {}}
    for path, url in urls.items():
        left = remaining()
        if stopped() or left < LIGHTHOUSE_MIN_S:
            out["pages"][path] = {"skipped": f"only {max(left, 0):.0f} s left in the window"}
            continue
        out["pages"][path] = run_lighthouse(binary, url, chromium, chrome_args, min(LIGHTHOUSE_TIMEOUT_S, left))
    return out


def run_lighthouse(binary: str, url: str, chromium: str, chrome_args: list[str], timeout_s: float) -> dict[str, Any]:
    """One bounded Lighthouse run (performance category only) -> its summary or its error."""
    cmd = [binary, url, "--quiet", "--output=json", "--output-path=stdout", "--only-categories=performance",
           f"--chrome-flags={' '.join(chrome_args)}", f"--max-wait-for-load={int(timeout_s * 1000 * 0.6)}"]
    env = {**os.environ, "CHROME_PATH": chromium}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_process_tree(proc)
        return {"error": f"lighthouse did not finish within {timeout_s:.0f} s"}
    if proc.returncode != 0:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"lighthouse exited with {proc.returncode}: {tail}"}
    try:
        return summarise_lighthouse(json.loads(stdout))
    except (ValueError, KeyError, TypeError) as exc:
        return {"error": f"lighthouse report unreadable: {exc}"}


def summarise_lighthouse(report: dict[str, Any]) -> dict[str, Any]:
    """Score, metric values and the failing performance audits of one Lighthouse report."""
    audits = report["audits"]
    category = report["categories"]["performance"]
    failing: dict[str, Any] = {}
    for ref in category.get("auditRefs", []):
        audit = audits.get(ref["id"]) or {}
        score = audit.get("score")
        if score is None or score >= AUDIT_PASS_SCORE or ref["id"] in METRIC_AUDITS:
            continue
        details = audit.get("details") or {}
        failing[ref["id"]] = {"title": audit.get("title"), "score": score,
                              "display_value": audit.get("displayValue"),
                              "numeric_value": audit.get("numericValue"),
                              "savings_ms": details.get("overallSavingsMs"),
                              "savings_bytes": details.get("overallSavingsBytes")}
    return {"version": report.get("lighthouseVersion"), "score": category.get("score"),
            "metrics": {m: audits[m].get("numericValue") for m in METRIC_AUDITS if m in audits},
            "audits": failing, "run_warnings": report.get("runWarnings", []),
            "runtime_error": (report.get("runtimeError") or {}).get("message")}


def stop_process_tree(proc: subprocess.Popen[str]) -> None:
    """Kill a Lighthouse process, its process group and the browser it launched.

    The group is frozen first (SIGSTOP), so no member forks while the tree is listed; the
    browser runs in a session of its own (chrome-launcher detaches it) and is found as a
    descendant.
    """
    signal_group(proc.pid, signal.SIGSTOP)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        with suppress(psutil.NoSuchProcess):
            child.kill()
    signal_group(proc.pid, signal.SIGKILL)
    proc.communicate()
