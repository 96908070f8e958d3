"""The folders tell the architecture, and the imports keep to it (STYLE.md, "Layout").

Every module under tasks/ and flows/ is parsed (not imported); its imports of project modules,
function-local ones included, make the import graph. Three rules hold on it:

1. no import cycles: no two modules reach each other (a strongly connected component of more
   than one module fails, with one of its cycles spelled out);
2. layering: the lower layers never load the higher ones. Checked on what importing a module
   really loads: its imports, their package ``__init__``s (a re-export counts), and so on;
3. no module over MAX_LINES lines.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tasks", "flows")
MAX_LINES = 400

# (modules, what they must never load, why)
LAYERS = [
    (("tasks.spec", "tasks.store", "tasks.errors"), ("tasks.agents", "tasks.loop", "tasks.trial", "flows"),
     "the spec, the store and the errors know nothing of agents or of the loop"),
    (("tasks.search",), ("tasks.load", "tasks.agents"),
     "the search and the optimizer know nothing of Locust or of the agents"),
    (("tasks",), ("flows",), "flows orchestrate tasks, never the other way round"),
]


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module under the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = module_files()


def imported(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports, anywhere in its body (function-local imports too).

    ``from pkg import name`` is ``pkg.name`` when that is a module, else ``pkg``; ``import a.b.c``
    is the longest project module it names.
    """
    found: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in MODULES:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    found.add(f"{base}.{alias.name}")
                elif base in MODULES:
                    found.add(base)
    found.discard(module)
    return found


GRAPH = {module: imported(module, path) for module, path in MODULES.items()}


def parents(module: str) -> list[str]:
    """The packages Python runs before ``module`` (``a.b.c`` -> ``a``, ``a.b``), when they are ours."""
    parts = module.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in MODULES]


def loads(module: str) -> dict[str, str | None]:
    """Every project module importing ``module`` runs -> the module that imported it, or the
    subpackage whose ``__init__`` runs first (a BFS tree rooted at ``module``)."""
    seen: dict[str, str | None] = {module: None}
    queue = deque([module])
    while queue:
        current = queue.popleft()
        for nxt in sorted(GRAPH[current] | set(parents(current))):
            if nxt not in seen:
                seen[nxt] = current
                queue.append(nxt)
    return seen


def chain(tree: dict[str, str | None], end: str) -> str:
    path = [end]
    while (step := tree[path[-1]]) is not None:
        path.append(step)
    return " -> ".join(reversed(path))


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def a_cycle(component: Iterable[str]) -> str:
    """One cycle through the component's first module, spelled out."""
    members = set(component)
    start = min(members)
    tree: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for nxt in sorted(GRAPH[current] & members):
            if nxt == start:
                return chain(tree, current) + " -> " + start
            if nxt not in tree:
                tree[nxt] = current
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")  # a component of 2+ always has one


def within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read() -> None:
    """The rules below are only as good as the graph: known edges of each import form are in it."""
    assert {"tasks.loop", "tasks.window", "flows.cli", "tasks.agents.database.agent"} <= MODULES.keys()
    assert "tasks.window" in GRAPH["tasks.loop"]  # from tasks.window import ...
    assert "tasks.progress" in GRAPH["tasks.loop"]  # from tasks import progress
    assert "tasks.agents.application.agent" in GRAPH["tasks.agents.registry"]  # a function-local import
    assert "tasks.results.evidence" in GRAPH["flows.cli"]  # a function-local import in a flow
    assert "tasks.store" in loads("tasks.results.history")


def test_no_import_cycles() -> None:
    cycles = [a_cycle(c) for c in strongly_connected(GRAPH) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(("lower", "higher", "why"), LAYERS, ids=[", ".join(layer[0]) for layer in LAYERS])
def test_lower_layers_never_load_higher_ones(lower: tuple[str, ...], higher: tuple[str, ...], why: str) -> None:
    leaks = []
    for module in sorted(m for m in MODULES if within(m, lower)):
        tree = loads(module)
        # where the chain first enters a higher layer (what lies beyond follows from it)
        leaks += [chain(tree, m) for m in sorted(tree) if within(m, higher) and not within(tree[m] or "", higher)]
    assert not leaks, f"{why}:\n" + "\n".join(leaks)


def test_modules_stay_short() -> None:
    lengths = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    long = {m: n for m, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along a seam): {long}"
