"""py-spy's collapsed stacks: parse them, tell the target's own code apart, aggregate.

A raw line (``py-spy record --format raw --full-filenames --threads --subprocesses``) is
``process PID:"cmd";thread (TID): name;fn (file:line);...;leaf (file:line) COUNT``, root
first. A frame is the target's *own* code when its file lies under one of the target's
folders (its start cwd, its processes' cwd, the spec's folder) and not in a library: not in
site-packages, a virtualenv, the standard library, nor perfagents itself. Own frames are
named ``module:function``, the module being the file's path relative to that folder.
"""

from __future__ import annotations

import ast
import linecache
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tasks

TOOLKIT_DIR = Path(tasks.__file__).resolve().parent  # perfagents' own code (injected hooks ...)
LIBRARY_MARKERS = ("/site-packages/", "/dist-packages/", "/.venv/", "/venv/", "/.tox/", "/node_modules/")
STDLIB_PATH = re.compile(r"/lib(?:64)?/python\d+(?:\.\d+)?/")
LOOP_FILES = ("/asyncio/runners.py", "/asyncio/base_events.py", "/asyncio/events.py")
LOOP_MARKERS = ("/uvloop/",)
SERVER_MARKERS = ("/asyncio/runners.py", "/asyncio/base_events.py", "/uvloop/", "/socketserver.py",
                  "/uvicorn/main.py", "/uvicorn/server.py", "/gunicorn/arbiter.py", "/hypercorn/",
                  "/werkzeug/serving.py", "/waitress/server.py", "/tornado/ioloop.py", "/twisted/internet/",
                  "/trio/_core/_run.py")  # a frame below which a server or event loop runs
TOP_FUNCTIONS = 40  # functions kept per profile in the observations
TOP_DETAIL = 3  # lines / callees kept per function

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_PROCESS = re.compile(r'^process (?P<pid>\d+):".*?";(?=process \d+:"|thread \()')
_THREAD = re.compile(r"^thread \((?P<tid>\w+)\)(?::\s*(?P<name>.*))?$")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    def text(self) -> str:
        return f"{self.function} ({self.file}:{self.line})"


@dataclass(frozen=True)
class Stack:
    thread: str  # "pid/tid" (pid 0 when the profile did not name processes)
    thread_name: str
    frames: tuple[Frame, ...]  # root first
    count: int


def parse_collapsed(text: str) -> list[Stack]:
    """Every stack of a raw (collapsed) py-spy file; malformed lines are skipped."""
    stacks: list[Stack] = []
    for raw in text.splitlines():
        body, _, count = raw.rstrip().rpartition(" ")
        if not body or not count.isdigit():
            continue
        pid = "0"
        while (match := _PROCESS.match(body)) is not None:  # gunicorn: master;worker;thread
            pid, body = match.group("pid"), body[match.end():]
        parts = body.split(";")
        tid, name = "0", ""
        thread = _THREAD.match(parts[0])
        if thread:
            tid, name, parts = thread.group("tid"), thread.group("name") or "", parts[1:]
        frames = tuple(_frame(p) for p in parts if p)
        if frames:
            stacks.append(Stack(f"{pid}/{tid}", name, frames, int(count)))
    return stacks


def _frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "", 0)
    return Frame(match.group("function"), match.group("file"), int(match.group("line")))


class CodeLocator:
    """Decides whether a file is the target's own code, and names its module."""

    def __init__(self, roots: Iterable[Path | str]) -> None:
        seen: list[Path] = []
        for root in roots:
            path = Path(root).resolve()
            if len(path.parts) > 2 and path not in seen:  # "/" or "/home" would claim everything
                seen.append(path)
        self.roots = seen
        self._cache: dict[str, str | None] = {}

    def module_of(self, file: str) -> str | None:
        """``pkg.mod`` for a file of the target's own code; None for libraries and unknown files."""
        if file not in self._cache:
            self._cache[file] = self._module(file)
        return self._cache[file]

    def _module(self, file: str) -> str | None:
        if not file.endswith(".py") or not file.startswith("/") or is_library(file):
            return None
        path = Path(file)
        if path.is_relative_to(TOOLKIT_DIR):
            return None
        for root in self.roots:
            if path.is_relative_to(root):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__" and len(parts) > 1:
                    parts.pop()
                return ".".join(parts)
        return None

    def name(self, frame: Frame) -> str:
        """``module:function`` for own code, ``lib/path.py:function`` for the rest."""
        module = self.module_of(frame.file)
        if module is not None:
            return f"{module}:{frame.function}"
        return f"{short_path(frame.file)}:{frame.function}"


def is_library(file: str) -> bool:
    return any(marker in file for marker in LIBRARY_MARKERS) or bool(STDLIB_PATH.search(file))


def short_path(file: str) -> str:
    """A library file without its install prefix (``starlette/routing.py``)."""
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in file:
            return file.split(marker, 1)[1]
    match = STDLIB_PATH.search(file)
    if match:
        return file[match.end():]
    return file or "?"


def is_loop_stack(stack: Stack) -> bool:
    """The stack runs an event loop: asyncio's own frames, or a coroutine executing on it."""
    if any(f.file.endswith(LOOP_FILES) or any(m in f.file for m in LOOP_MARKERS) for f in stack.frames):
        return True
    return any(is_coroutine(f.file, f.line) for f in stack.frames)


def loop_threads(stacks: list[Stack]) -> set[str]:
    """Threads seen running an event loop in at least one of their stacks."""
    return {s.thread for s in stacks if is_loop_stack(s)}


def responsible_frames(stack: Stack, locator: CodeLocator) -> list[Frame]:
    """Own frames that do the work on this stack: not entry points (``<module>``, a ``main()``
    that starts the server) whose samples are the server's plumbing, not the target's code."""
    last_server = max((i for i, f in enumerate(stack.frames) if any(m in f.file for m in SERVER_MARKERS)), default=-1)
    return [f for i, f in enumerate(stack.frames)
            if i > last_server and f.function != "<module>" and locator.module_of(f.file) is not None]


def aggregate_functions(stacks: list[Stack], locator: CodeLocator) -> dict[str, Any]:
    """Self, inclusive and 'attributed' sample counts per function.

    *attributed* counts a sample for the deepest responsible own frame on its stack: the
    target's function behind that CPU, the library calls it makes included.
    """
    total = sum(s.count for s in stacks)
    self_n: Counter[str] = Counter()
    incl_n: Counter[str] = Counter()
    attr_n: Counter[str] = Counter()
    lines: dict[str, Counter[int]] = defaultdict(Counter)
    callees: dict[str, Counter[str]] = defaultdict(Counter)
    where: dict[str, Frame] = {}
    for stack in stacks:
        names = [locator.name(f) for f in stack.frames]
        for name, frame in zip(names, stack.frames, strict=True):
            where.setdefault(name, frame)
        for name in set(names):
            incl_n[name] += stack.count
        self_n[names[-1]] += stack.count
        own = responsible_frames(stack, locator)
        if own:
            i = len(stack.frames) - 1 - stack.frames[::-1].index(own[-1])
            attr_n[names[i]] += stack.count
            lines[names[i]][stack.frames[i].line] += stack.count
            if i < len(names) - 1:
                callees[names[i]][names[-1]] += stack.count
    ranked = sorted(incl_n, key=lambda n: (-attr_n[n], -self_n[n], -incl_n[n]))[:TOP_FUNCTIONS]
    return {"samples": total, "functions": [{
        "location": n, "own": locator.module_of(where[n].file) is not None, "file": where[n].file,
        "self": self_n[n], "inclusive": incl_n[n], "attributed": attr_n[n],
        "lines": [[line, c] for line, c in lines[n].most_common(TOP_DETAIL)],
        "calls_into": [[callee, c] for callee, c in callees[n].most_common(TOP_DETAIL)],
    } for n in ranked]}


def aggregate_loop_sites(stacks: list[Stack], locator: CodeLocator) -> dict[str, Any]:
    """Samples of event-loop threads, grouped by the own-code frame that runs on the loop.

    A site is (the deepest responsible own function on the stack, the leaf frame): with
    ``--idle`` a sample there means the loop thread was inside the target's code, running or blocked.
    """
    threads = loop_threads(stacks)
    loop = [s for s in stacks if s.thread in threads]
    sites: dict[str, dict[str, Any]] = {}
    for stack in loop:
        own = responsible_frames(stack, locator)
        if not own:
            continue
        caller, leaf = own[-1], stack.frames[-1]
        key = f"{locator.name(caller)} -> {leaf.text()}"
        site = sites.get(key)
        if site is None:
            site = sites[key] = {
                "caller": locator.name(caller), "caller_line": caller.line, "leaf": leaf.text(),
                "source": source_line(caller.file, caller.line),
                "async": any(is_coroutine(f.file, f.line) for f in own), "count": 0}
        site["count"] += stack.count
    return {"samples": sum(s.count for s in loop), "threads": sorted(threads), "sites": sites}


def source_line(file: str, line: int) -> str:
    return linecache.getline(file, line).strip()


_FUNCTION_SPANS: dict[str, list[tuple[int, int, bool]]] = {}


def is_coroutine(file: str, line: int) -> bool:
    """Whether the innermost function around ``file:line`` is an ``async def``."""
    spans = _FUNCTION_SPANS.get(file)
    if spans is None:
        try:
            tree = ast.parse(Path(file).read_text())
        except (OSError, SyntaxError, ValueError):
            tree = ast.Module(body=[], type_ignores=[])
        spans = _FUNCTION_SPANS[file] = [
            (node.lineno, node.end_lineno or node.lineno, isinstance(node, ast.AsyncFunctionDef))
            for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    inside = [s for s in spans if s[0] <= line <= s[1]]
    return bool(inside) and min(inside, key=lambda s: s[1] - s[0])[2]
