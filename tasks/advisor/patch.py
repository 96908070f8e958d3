"""The model's answer as a patch: the unified diff in its ```diff block, checked before anything.

``check_answer(text, source_dir)`` -> a PatchCheck whose ``outcome`` is

    no_patch        no ```diff block, or one without a file header (NO_PATCH answers land here)
    refused         a path outside source_dir: absolute, ``..``, through a symlink, into ``.git``,
                    or a binary patch; nothing is run
    does_not_apply  ``git apply --check`` in source_dir says no
    applies         ready to apply (journaled first, by the caller)

Paths are relative to ``source_dir`` (``--- a/PATH`` / ``+++ b/PATH``, or without the
prefixes). ``git apply`` runs in ``source_dir`` with ``--recount`` (models miscount hunk
lengths); run from a subfolder of a work tree it takes the paths as relative to that folder,
and it refuses paths that leave the work tree on its own too.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tasks.errors import RefusedError

Outcome = Literal["no_patch", "refused", "does_not_apply", "applies"]
DIFF_BLOCK = re.compile(r"^```diff[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
FILE_HEADER = re.compile(r"^(?:---|\+\+\+) (\S+)", re.M)
GIT_HEADER = re.compile(r"^(?:diff --git (\S+) (\S+)|(?:rename|copy) (?:from|to) (\S+))$", re.M)
GIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class PatchCheck:
    outcome: Outcome
    diff: str | None = None
    paths: tuple[str, ...] = field(default_factory=tuple)  # relative to source_dir, POSIX
    strip: int = 1  # git apply -p
    detail: str = ""


def extract_diff(text: str) -> str | None:
    """The first ```diff fenced block's body (ending in a newline), or None."""
    m = DIFF_BLOCK.search(text)
    if m is None or not m.group(1).strip():
        return None
    body = m.group(1)
    return body if body.endswith("\n") else body + "\n"


def diff_paths(diff: str) -> tuple[list[str], int]:
    """The file paths a diff names (``/dev/null`` left out) and its ``-p`` level (1: a/ b/ prefixes)."""
    raw = [m.group(1) for m in FILE_HEADER.finditer(diff)]
    for m in GIT_HEADER.finditer(diff):
        raw += [g for g in m.groups() if g]
    raw = [p.strip('"') for p in raw if p != "/dev/null"]
    prefixed = bool(raw) and all(p.startswith(("a/", "b/")) for p in raw)
    paths = [p[2:] if prefixed else p for p in raw]
    return list(dict.fromkeys(paths)), 1 if prefixed else 0


def unsafe_path(path: str, source_dir: Path) -> str | None:
    """Why ``path`` may not be patched, or None."""
    if not path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path) or "\\" in path:
        return f"{path!r} is not a relative path"
    parts = Path(path).parts
    if ".." in parts or ".git" in parts:
        return f"{path!r} leaves the source folder" if ".." in parts else f"{path!r} is inside .git"
    root = source_dir.resolve()
    if not (root / path).resolve().is_relative_to(root):
        return f"{path!r} resolves outside the source folder (a symlink)"
    return None


def check_answer(text: str, source_dir: Path) -> PatchCheck:
    diff = extract_diff(text)
    if diff is None:
        return PatchCheck("no_patch", detail="no ```diff block in the answer")
    paths, strip = diff_paths(diff)
    if not paths:
        return PatchCheck("no_patch", diff=diff, detail="the ```diff block names no file")
    if "GIT binary patch" in diff or "\nBinary files " in diff:
        return PatchCheck("refused", diff=diff, paths=tuple(paths), strip=strip, detail="a binary patch")
    for path in paths:
        why = unsafe_path(path, source_dir)
        if why:
            return PatchCheck("refused", diff=diff, paths=tuple(paths), strip=strip, detail=why)
    ok, detail = git_apply(diff, source_dir, strip=strip, check=True)
    return PatchCheck("applies" if ok else "does_not_apply", diff=diff, paths=tuple(paths), strip=strip,
                      detail=detail)


def file_sections(diff: str) -> list[str]:
    """The diff cut into one section per file. ``--recount`` counts a hunk up to the next line
    that cannot belong to it, and ``--- a/next.py`` can (a removed line): a plain multi-file diff
    (no ``diff --git`` lines between its files) only applies file by file."""
    lines = diff.splitlines(keepends=True)
    starts = [0]
    for i in range(1, len(lines) - 1):
        if lines[i].startswith("--- ") and lines[i + 1].startswith("+++ "):
            start = i
            while start > starts[-1] and not lines[start - 1].startswith((" ", "+", "-", "@@", "\\")):
                start -= 1  # the section's own header lines (diff --git, index, new file mode ...)
            if start > starts[-1]:
                starts.append(start)
    bounds = [*starts, len(lines)]
    return ["".join(lines[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if "".join(lines[a:b]).strip()]


def git_apply(diff: str, source_dir: Path, *, strip: int = 1, check: bool = False,
              reverse: bool = False) -> tuple[bool, str]:
    """``git apply`` in source_dir, file by file (file_sections): (succeeded, first line of its
    complaint). Every section is checked before any is applied; a failure while applying leaves
    the files as the journal recorded them to be restored (tasks/changes/code_patch.py)."""
    cmd = ["git", "apply", "--recount", "--whitespace=nowarn", f"-p{strip}"]
    cmd += ["--reverse"] if reverse else []
    sections = file_sections(diff)
    for section in sections:
        ok, first = _git(cmd + ["--check"], section, source_dir)
        if not ok:
            return False, first
    if check:
        return True, ""
    for section in sections:
        ok, first = _git(cmd, section, source_dir)
        if not ok:
            return False, first
    return True, ""


def _git(cmd: list[str], diff: str, source_dir: Path) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, cwd=source_dir, input=diff, text=True, capture_output=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"git apply failed to run: {exc}"
    first = (proc.stderr.strip().splitlines() or [""])[0]
    return proc.returncode == 0, first


def require_clean_work_tree(source_dir: Path) -> None:
    """RefusedError unless source_dir is in a git work tree with nothing uncommitted under it
    (the toolkit's own ``.perfagents/`` folder aside: a store kept in the source folder)."""
    try:
        inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=source_dir, text=True,
                                capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
        status = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude).perfagents"], cwd=source_dir, text=True,
                                capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RefusedError(f"code.source_dir {source_dir}: git failed to run ({exc})") from exc
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise RefusedError(f"code.source_dir {source_dir} is not a git work tree: patches need one to be reversible")
    if status.stdout.strip():
        first = status.stdout.strip().splitlines()[0]
        raise RefusedError(f"code.source_dir {source_dir} has uncommitted changes ({first.strip()} ...): "
                           "commit or stash them first")
