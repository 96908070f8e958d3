"""The prompt for one code-level finding (or several on one function), fitted to a token budget.

Pieces, each with a relevance and levels of detail (most detailed first):

    evidence    the finding's key facts (tasks/advisor/facts.py)            1.0   must
    located     the function the finding points at: exact lines, compact,
                signature                                                   0.95  must
    callee      a function it calls: compact, signature; one the evidence
                names (hot lines, calls_into, the stack) ranks higher       0.5-0.8
    imports     the located module's import statements                      0.5
    caller      the function that called it, from the evidence's stack      0.4
    more        the evidence's other fields (distributions, other stacks)   0.35

Fitting is greedy in relevance order: each piece goes in at the most detailed level that fits
while the must pieces still to come fit at their shortest; a second pass buys detail with what
is left. Counts are exact (the whole prompt, tasks/advisor/tokens.py) and the prompt never
exceeds ``max_tokens``; it is only as long as the finding needs. The instructions are static
and come first (the system message), so a provider's prompt cache covers them across calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tasks.advisor.facts import CODE_KINDS, pointed_lines, render_evidence
from tasks.advisor.source import (
    Function,
    callees,
    compact,
    load_function,
    module_imports,
    signature,
    split_location,
)
from tasks.advisor.tokens import count_messages, truncate_tokens
from tasks.findings import Finding

PROMPT_VERSION = "advisor-1"  # part of the answer cache's key: change it when the prompt changes
INSTRUCTIONS = """You are a performance engineer. A profiler measured the problem below in a web \
application under load; you get its evidence and the source of the function it points at, with \
the functions that function calls (some shortened: lines left out, bodies elided as `...`).

Answer with one unified diff that fixes the problem, inside one ```diff fenced block:
- paths relative to the source folder, as `--- a/PATH` and `+++ b/PATH`, PATH as in the `###` headings;
- context lines copied exactly from the source shown;
- change only what the fix needs; every response of the application must stay identical \
(same rows, same order, same fields); no new dependencies.
If you cannot fix it safely from what is shown, answer NO_PATCH and one line saying why."""
CALLEE_DEPTH = 2
MAX_CALLEES = 8
RELEVANCE = {"evidence": 1.0, "located": 0.95, "named_callee": 0.8, "callee": 0.6, "deep_callee": 0.45,
             "imports": 0.5, "caller": 0.4, "more": 0.35}


@dataclass
class Piece:
    key: str
    section: str  # finding | source | more
    relevance: float
    levels: list[tuple[str, str]]  # (level name, text), most detailed first
    must: bool = False
    function: Function | None = None


@dataclass(frozen=True)
class Context:
    """A fitted prompt: the messages, their exact token count and what they show."""

    messages: list[dict[str, str]]
    tokens: int
    max_tokens: int
    findings: tuple[Finding, ...]
    located: Function | None
    source_hash: str  # of the exact source of every function shown (the answer cache's key)
    shown: dict[str, str] = field(default_factory=dict)  # piece -> level
    left_out: list[str] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return "\n\n".join(m["content"] for m in self.messages)


def group_by_function(findings: Iterable[Finding]) -> list[list[Finding]]:
    """Code-level findings that share a function, as one group each (one call per group)."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        if f.kind in CODE_KINDS:
            groups.setdefault(split_location(f.location), []).append(f)
    return list(groups.values())


def build_context(findings: Finding | list[Finding], source_dir: Path, max_tokens: int) -> Context:
    group = [findings] if isinstance(findings, Finding) else list(findings)
    located = load_function(group[0].location, source_dir)
    pieces = collect_pieces(group, located, source_dir)
    chosen = fit(pieces, max_tokens)
    messages = render(pieces, chosen)
    tokens = count_messages(messages)
    if tokens > max_tokens:  # even the must pieces at their shortest do not fit: cut the user message
        free = max_tokens - count_messages([messages[0], {"role": "user", "content": ""}])
        messages[1]["content"] = truncate_tokens(messages[1]["content"], max(free, 0))
        tokens = count_messages(messages)
        while tokens > max_tokens and messages[1]["content"]:  # a cut can merge into a longer token
            messages[1]["content"] = messages[1]["content"][:-1]
            tokens = count_messages(messages)
    shown_fns = sorted({(p.function.path, p.function.text) for p in pieces if p.key in chosen and p.function})
    digest = hashlib.sha256("\0".join(f"{path}\0{text}" for path, text in shown_fns).encode()).hexdigest()
    return Context(messages=messages, tokens=tokens, max_tokens=max_tokens, findings=tuple(group),
                   located=located, source_hash=digest[:16],
                   shown={p.key: p.levels[chosen[p.key]][0] for p in pieces if p.key in chosen},
                   left_out=[p.key for p in pieces if p.key not in chosen])


def collect_pieces(group: list[Finding], located: Function | None, source_dir: Path) -> list[Piece]:
    pieces = [Piece(f"evidence:{i}", "finding", RELEVANCE["evidence"],
                    [("key", render_evidence(f, "key", located))], must=True) for i, f in enumerate(group)]
    for i, f in enumerate(group):
        more = render_evidence(f, "full", located).removeprefix(render_evidence(f, "key", located)).strip()
        if more:
            pieces.append(Piece(f"more:{i}", "more", RELEVANCE["more"], [("full", more)]))
    if located is None:
        return pieces
    pieces.append(Piece("located", "source", RELEVANCE["located"], _levels(located, "the located function"),
                        must=True, function=located))
    named = _named_in_evidence(group)
    seen = {located.location}
    frontier = [located]
    for depth in range(1, CALLEE_DEPTH + 1):
        nxt = []
        for fn in frontier:
            for callee in callees(fn, source_dir):
                if callee.location in seen or len(seen) > MAX_CALLEES:
                    continue
                seen.add(callee.location)
                nxt.append(callee)
                rank = ("named_callee" if callee.qualname in named or callee.name() in named
                        else "callee" if depth == 1 else "deep_callee")
                pieces.append(Piece(f"callee:{callee.location}", "source", RELEVANCE[rank],
                                    _levels(callee, f"called by {fn.qualname}")[1:], function=callee))
        frontier = nxt
    imports = module_imports(located, source_dir)
    if imports is not None:
        pieces.append(Piece("imports", "source", RELEVANCE["imports"],
                            [("exact", f"### {imports.path} lines {imports.first_line}-{imports.last_line}: "
                                       f"its module's imports\n```python\n{imports.text}\n```")],
                            function=imports))
    caller = _caller(group, located, source_dir)
    if caller is not None and caller.location not in seen:
        pieces.append(Piece(f"caller:{caller.location}", "source", RELEVANCE["caller"],
                            _levels(caller, f"calls {located.qualname}")[1:], function=caller))
    return pieces


def _levels(fn: Function, role: str) -> list[tuple[str, str]]:
    def block(text: str, note: str) -> str:
        return f"### {fn.path} lines {fn.first_line}-{fn.last_line}: {fn.qualname} ({role}{note})\n```python\n{text}\n```"

    return [("exact", block(fn.text, ", exact lines")),
            ("compact", block(compact(fn), ", docstring, comments and blank lines left out")),
            ("signature", block(signature(fn), ", body elided"))]


def _named_in_evidence(group: list[Finding]) -> set[str]:
    """Function names the evidence mentions: calls_into, the stack, the pointed lines' calls."""
    names: set[str] = set()
    for f in group:
        for callee in f.evidence.get("calls_into") or []:
            names.add(split_location(str(callee.get("function", "")))[1])
        for frame in f.evidence.get("stack") or []:
            names.add(split_location(frame.rpartition(":")[0])[1])
        for _, source in pointed_lines(f):
            names |= {w for w in (source or "").replace("(", " ").replace(".", " ").split() if w.isidentifier()}
    return names


def _caller(group: list[Finding], located: Function, source_dir: Path) -> Function | None:
    """The function one frame out from the located one on the evidence's stack."""
    for f in group:
        frames = [frame.rpartition(":")[0] for frame in f.evidence.get("stack") or []]
        here = [i for i, fr in enumerate(frames) if split_location(fr)[1] == located.qualname]
        if here and here[0] + 1 < len(frames):
            return load_function(frames[here[0] + 1], source_dir)
    return None


def fit(pieces: list[Piece], max_tokens: int) -> dict[str, int]:
    """Piece key -> chosen level index (module docstring); pieces left out are absent."""
    order = sorted(range(len(pieces)), key=lambda i: -pieces[i].relevance)
    chosen: dict[str, int] = {}

    def fits(trial: dict[str, int], pending_musts: list[Piece]) -> bool:
        with_musts = trial | {p.key: len(p.levels) - 1 for p in pending_musts if p.key not in trial}
        return count_messages(render(pieces, with_musts)) <= max_tokens

    for n, i in enumerate(order):
        piece = pieces[i]
        pending = [pieces[j] for j in order[n + 1:] if pieces[j].must]
        for level in range(len(piece.levels)):
            if fits(chosen | {piece.key: level}, pending):
                chosen[piece.key] = level
                break
        else:
            if piece.must:
                chosen[piece.key] = len(piece.levels) - 1  # cut later by build_context
    for i in order:  # second pass: detail with what is left
        piece = pieces[i]
        for level in range(chosen.get(piece.key, 0)):
            if piece.key in chosen and fits(chosen | {piece.key: level}, []):
                chosen[piece.key] = level
                break
    return chosen


def render(pieces: list[Piece], chosen: dict[str, int]) -> list[dict[str, str]]:
    parts: dict[str, list[str]] = {"finding": [], "source": [], "more": []}
    for p in pieces:
        if p.key in chosen:
            parts[p.section].append(p.levels[chosen[p.key]][1])
    user = "## Finding\n" + "\n\n".join(parts["finding"])
    if parts["source"]:
        user += "\n\n## Source\n" + "\n\n".join(parts["source"])
    if parts["more"]:
        user += "\n\n## More evidence\n" + "\n\n".join(parts["more"])
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": user}]
