"""A handle on a running target, and the small text helpers its errors share."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from tasks.target.process import listener_pid, tree

PROBE_TIMEOUT_S = 2.0
MAX_LINE_CHARS = 300


@dataclass(eq=False)
class TargetHandle:
    """A target the toolkit started (``process`` set) or attached to (``process`` None)."""

    base_url: str  # rendered, no placeholders
    port: int
    process: subprocess.Popen[bytes] | None
    workdir: Path | None
    config: dict[str, Any]  # knob values in effect
    log_path: Path | None
    extra_env: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def pids(self) -> list[int]:
        """The target's whole process tree now; for an attached target, the port's listener's."""
        if self.process is None:
            root = listener_pid(self.port)
        else:
            root = self.process.pid if self.process.poll() is None else None
        return [] if root is None else [p.pid for p in tree(root)]

    def is_running(self) -> bool:
        """A started target: its process is alive; an attached one: base_url answers."""
        if self.process is not None:
            return self.process.poll() is None
        try:
            httpx.get(self.base_url, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return True


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 3] + "..."


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else "(no output)"


def describe_error(exc: BaseException) -> str:
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
