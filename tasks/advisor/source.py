"""The target's source, as the advisor shows it: a finding's function and what it calls.

A code location is ``package.module:qualname`` (or ``path/file.py:qualname``). The module
resolves to a file under ``source_dir``: ``a/b/c.py`` or ``a/b/c/__init__.py``, else the same
with leading packages dropped (``source_dir`` may be the package itself). Nothing outside
``source_dir`` is ever read. ``ast`` cuts functions out of a file with their exact lines.

Callees are the functions a function calls that resolve to source under ``source_dir``: a
function of the same module, a name imported from another module of the target, a method of
the same class (``self.m()``) or of a class a parameter is annotated with (``db: Database``
-> ``Database.query``). Library calls are left out.

Compression keeps a function's lines verbatim (a patch must match them) and only drops lines:
``compact`` drops the docstring, comment-only lines and blank lines; ``signature`` keeps the
``def`` line(s) and the docstring's first line, the body elided.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PY_SUFFIX = ".py"


@dataclass(frozen=True)
class Function:
    """One function of the target's source, with its exact lines."""

    location: str  # module:qualname
    path: str  # relative to source_dir, POSIX
    qualname: str
    first_line: int  # 1-based, the decorator's line when decorated
    last_line: int
    text: str  # the exact lines
    docstring_lines: tuple[int, int] | None  # first and last line of its docstring
    body_line: int  # where the body starts (after the signature)

    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]


def split_location(location: str) -> tuple[str, str]:
    """``pkg.mod:Cls.fn`` -> (``pkg.mod``, ``Cls.fn``); ``f.<locals>.g`` -> ``f.g`` (a nested
    function); from a ``<lambda>``/``<listcomp>``/``<genexpr>`` on, the enclosing function."""
    module, sep, qualname = location.rpartition(":")
    if not sep:
        return location, ""
    parts = [p for p in qualname.split(".") if p != "<locals>"]
    keep = parts[: next((i for i, p in enumerate(parts) if p.startswith("<")), len(parts))]
    return module, ".".join(keep)


def module_file(module: str, source_dir: Path) -> Path | None:
    """The file of ``module`` (dotted, or a path ending in .py) under ``source_dir``; None if none."""
    root = source_dir.resolve()
    if module.endswith(PY_SUFFIX):
        candidates = [Path(module)]
        parts = Path(module).parts
        candidates += [Path(*parts[i:]) for i in range(1, len(parts))]
    else:
        parts = tuple(module.split("."))
        candidates = []
        for i in range(len(parts)):
            tail = parts[i:]
            candidates += [Path(*tail[:-1], tail[-1] + PY_SUFFIX), Path(*tail, "__init__.py")]
    for rel in candidates:
        if rel.is_absolute():
            path = rel.resolve()
        else:
            path = (root / rel).resolve()
        if path.is_file() and path.is_relative_to(root):
            return path
    return None


@lru_cache(maxsize=64)
def _parse(path: Path, text: str) -> tuple[ast.Module, tuple[str, ...]]:
    return ast.parse(text, filename=str(path)), tuple(text.splitlines())


def parse_file(path: Path) -> tuple[ast.Module, tuple[str, ...]]:
    """The file's tree and lines; cached by content (two writes within one mtime tick differ)."""
    return _parse(path, path.read_text(encoding="utf-8"))


def find_node(tree: ast.AST, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function ``Cls.fn`` / ``outer.inner`` / ``fn`` in ``tree``."""
    node: ast.AST = tree
    for part in qualname.split("."):
        found = None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and child.name == part:
                found = child
                break
        if found is None:
            return None
        node = found
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None


def load_function(location: str, source_dir: Path) -> Function | None:
    """The located function's exact source, or None when it is not under ``source_dir``."""
    module, qualname = split_location(location)
    path = module_file(module, source_dir) if qualname else None
    if path is None:
        return None
    tree, lines = parse_file(path)
    node = find_node(tree, qualname)
    if node is None:
        return None
    return _function(node, module, qualname, path, lines, source_dir)


def _function(node: ast.FunctionDef | ast.AsyncFunctionDef, module: str, qualname: str, path: Path,
              lines: tuple[str, ...], source_dir: Path) -> Function:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    last = node.end_lineno or node.lineno
    doc = None
    body0 = node.body[0]
    if (isinstance(body0, ast.Expr) and isinstance(body0.value, ast.Constant)
            and isinstance(body0.value.value, str)):
        doc = (body0.lineno, body0.end_lineno or body0.lineno)
    return Function(location=f"{module}:{qualname}", path=path.relative_to(source_dir.resolve()).as_posix(),
                    qualname=qualname, first_line=first, last_line=last, text="\n".join(lines[first - 1:last]),
                    docstring_lines=doc, body_line=body0.lineno)


def module_imports(fn: Function, source_dir: Path) -> Function | None:
    """The top-level import statements of ``fn``'s module, as one block of their exact lines."""
    module, _ = split_location(fn.location)
    path = module_file(module, source_dir)
    if path is None:
        return None
    tree, lines = parse_file(path)
    nodes = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    if not nodes:
        return None
    kept = [line for n in nodes for line in lines[n.lineno - 1:(n.end_lineno or n.lineno)]]
    first, last = nodes[0].lineno, nodes[-1].end_lineno or nodes[-1].lineno
    return Function(location=f"{module}:<imports>", path=fn.path, qualname="<imports>", first_line=first,
                    last_line=last, text="\n".join(kept), docstring_lines=None, body_line=first)


# -- callees --------------------------------------------------------------------------------
def callees(fn: Function, source_dir: Path) -> list[Function]:
    """The functions ``fn`` calls that are target source under ``source_dir``, in call order."""
    module, _ = split_location(fn.location)
    path = module_file(module, source_dir)
    if path is None:
        return []
    tree, lines = parse_file(path)
    node = find_node(tree, fn.qualname)
    if node is None:
        return []
    imports = _imports(tree)
    types = {a.arg: a.annotation.id for a in node.args.args + node.args.kwonlyargs
             if isinstance(a.annotation, ast.Name)}
    owner = fn.qualname.rsplit(".", 1)[0] if "." in fn.qualname else None
    found: dict[str, Function] = {}
    calls = sorted((n for n in ast.walk(node) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
    for call in calls:
        for target_module, qualname in _call_targets(call.func, module, imports, types, owner):
            target = load_function(f"{target_module}:{qualname}", source_dir)
            if target is not None and target.location != fn.location:
                found.setdefault(target.location, target)
                break
    return list(found.values())


def _imports(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Local name -> (module, name) for ``from m import n`` at the module's top level ('' name: a module)."""
    out: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out[alias.asname or alias.name.split(".")[0]] = (alias.name, "")
    return out


def _call_targets(func: ast.expr, module: str, imports: dict[str, tuple[str, str]], types: dict[str, str],
                  owner: str | None) -> list[tuple[str, str]]:
    """Candidate (module, qualname) a call's function expression may name, most likely first."""
    if isinstance(func, ast.Name):
        if func.id in imports:
            mod, name = imports[func.id]
            return [(mod, name)] if name else []
        return [(module, func.id)]
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        base, attr = func.value.id, func.attr
        if base in ("self", "cls") and owner:
            return [(module, f"{owner}.{attr}")]
        if base in types:  # db: Database -> Database.query
            cls = types[base]
            mod, name = imports.get(cls, (module, cls))
            return [(mod, f"{name or cls}.{attr}")]
        if base in imports and not imports[base][1]:  # import pkg.mod as m; m.fn()
            return [(imports[base][0], attr)]
        if base in imports:  # from pkg import mod; mod.fn()
            mod, name = imports[base]
            return [(f"{mod}.{name}", attr)]
    return []


# -- compression ----------------------------------------------------------------------------
def compact(fn: Function) -> str:
    """The function's lines without its docstring, comment-only lines and blank lines."""
    drop = _comment_lines(fn.text)
    if fn.docstring_lines:
        a, b = fn.docstring_lines
        drop |= set(range(a - fn.first_line + 1, b - fn.first_line + 2))
    kept = [line for i, line in enumerate(fn.text.splitlines(), 1) if i not in drop and line.strip()]
    return "\n".join(kept)


def signature(fn: Function) -> str:
    """The ``def`` line(s), the docstring's first line, and ``...`` for the body."""
    lines = fn.text.splitlines()
    head = lines[: max(fn.body_line - fn.first_line, 1)]
    indent = _indent(lines[fn.body_line - fn.first_line]) if fn.body_line - fn.first_line < len(lines) else "    "
    out = list(head)
    if fn.docstring_lines:
        doc = lines[fn.docstring_lines[0] - fn.first_line].strip().strip('"').strip("'").strip()
        if doc:
            out.append(f'{indent}"""{doc}"""')
    out.append(f"{indent}...  # body not shown")
    return "\n".join(out)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _comment_lines(text: str) -> set[int]:
    """1-based lines of ``text`` holding only a comment."""
    out: set[int] = set()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent(text)).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return out
    code_lines = {t.start[0] for t in tokens if t.type not in (
        tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)}
    return {t.start[0] for t in tokens if t.type == tokenize.COMMENT and t.start[0] not in code_lines}
