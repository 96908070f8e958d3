"""A code-level finding's evidence as the advisor states it, and its key facts.

``render_evidence(finding, level)``: ``key`` states what a fix must know (kind, location,
endpoint, the statement, the numbers that size the problem, the lines it points at); ``full``
adds every other evidence field (long values cut). Numbers are written by ``fmt`` everywhere,
so a fact found in one rendering is found in the others.

``key_facts(finding, located)``: the facts a prompt must keep to be useful: the file, the
function, its ``def`` line, the lines the evidence points at, the statement, the numbers. The
context benchmark counts how many survive a token budget.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tasks.advisor.source import Function, split_location
from tasks.findings import Finding

CODE_KINDS = ("n_plus_one", "hot_function", "superlinear_complexity", "blocking_call")
# evidence paths (dotted) that size the problem, per kind
KEY_NUMBERS: dict[str, tuple[str, ...]] = {
    "n_plus_one": ("count_per_request.median", "count_per_request.max", "ms_per_request", "mean_ms",
                   "requests_with_repeats", "endpoint_requests"),
    "hot_function": ("share_attributed", "samples", "total_samples", "share_self"),
    "blocking_call": ("loop_blocked_share", "wall_samples", "cpu_samples"),
    "superlinear_complexity": ("exponent", "class", "sizes", "best_ms"),
}
KEY_TEXT = ("statement", "endpoint_template", "source", "leaf", "attribution")
FULL_VALUE_CHARS = 300
STACK_FRAMES_SHOWN = 4


@dataclass(frozen=True)
class Fact:
    name: str  # file, function, def_line, line:<n>, statement, <evidence path>
    value: str
    numeric: bool = False

    def found_in(self, text: str) -> bool:
        if not self.numeric:
            return self.value in text
        tail = r"\d*" if "." in self.value else r"(\.0+)?(?![\d])"  # 2.387 is 2.3872 rounded; 50 is 50.0
        pattern = rf"(?<![\d.]){re.escape(self.value)}{tail}"
        return re.search(pattern, text) is not None


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "null"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return json.dumps(value, default=str, separators=(", ", ": "))


def get_path(evidence: dict[str, Any], path: str) -> Any:
    value: Any = evidence
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def pointed_lines(finding: Finding) -> list[tuple[int | None, str | None]]:
    """(line, source) the evidence points at: the statement's call line, hot lines, the blocking call."""
    ev = finding.evidence
    out: list[tuple[int | None, str | None]] = []
    if finding.kind == "hot_function":
        out += [(h.get("line"), h.get("source")) for h in ev.get("hot_lines") or []]
    elif finding.kind == "blocking_call":
        out.append((ev.get("call_line"), ev.get("source")))
    elif finding.kind == "n_plus_one":
        module, qualname = split_location(finding.location)
        for frame in ev.get("stack") or []:
            head, _, line = frame.rpartition(":")
            if split_location(head) == (module, qualname) and line.isdigit():
                out.append((int(line), None))
                break
    return out


def render_evidence(finding: Finding, level: str, located: Function | None) -> str:
    """The finding as lines of text; ``level`` is ``key`` or ``full``."""
    ev = finding.evidence
    lines = [f"kind: {finding.kind} (severity {finding.severity}, seen by the {finding.agent} agent)",
             f"location: {finding.location}"]
    if located is not None:
        lines.append(f"file: {located.path} lines {located.first_line}-{located.last_line}")
    if finding.endpoint:
        lines.append(f"endpoint: {finding.endpoint}")
    for key in KEY_TEXT:
        if isinstance(ev.get(key), str):
            lines.append(f"{key}: {ev[key]}")
    for path in KEY_NUMBERS.get(finding.kind, ()):
        value = get_path(ev, path)
        if value is not None:
            lines.append(f"{path}: {fmt(value)}")
    for line, source in pointed_lines(finding):
        text = source or _line_text(located, line)
        lines.append(f"points at line {line}: {text.strip() if text else '?'}")
    if finding.kind == "hot_function":
        for callee in (ev.get("calls_into") or [])[:STACK_FRAMES_SHOWN]:
            lines.append(f"calls into: {callee.get('function')} ({fmt(callee.get('samples'))} samples)")
    if ev.get("stack"):
        lines.append("called from: " + " <- ".join(ev["stack"][:STACK_FRAMES_SHOWN]))
    if level == "full":
        shown = set(KEY_TEXT) | {p.split(".")[0] for p in KEY_NUMBERS.get(finding.kind, ())} | {"stack"}
        for key, value in ev.items():
            if key not in shown and value not in (None, [], {}):
                lines.append(f"{key}: {_cut(fmt(value))}")
        for key, value in finding.estimated_gain.items():
            lines.append(f"estimated_gain.{key}: {_cut(fmt(value))}")
    return "\n".join(lines)


def key_facts(finding: Finding, located: Function | None) -> list[Fact]:
    """What a prompt about this finding must keep (module docstring)."""
    ev = finding.evidence
    _, qualname = split_location(finding.location)
    facts: list[Fact] = []
    if located is not None:
        def_line = next(t.strip() for t in located.text.splitlines() if t.lstrip().startswith(("def ", "async def ")))
        facts += [Fact("file", located.path), Fact("function", qualname), Fact("def_line", def_line)]
    for line, source in pointed_lines(finding):
        text = _line_text(located, line) or source
        if text and text.strip():
            facts.append(Fact(f"line:{line}", text.strip()))
    if isinstance(ev.get("statement"), str):
        facts.append(Fact("statement", ev["statement"]))
    for path in KEY_NUMBERS.get(finding.kind, ()):
        value = get_path(ev, path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            facts.append(Fact(path, fmt(value), numeric=True))
    return facts


def _line_text(located: Function | None, line: int | None) -> str | None:
    if located is None or line is None or not located.first_line <= line <= located.last_line:
        return None
    return located.text.splitlines()[line - located.first_line]


def _cut(text: str) -> str:
    return text if len(text) <= FULL_VALUE_CHARS else text[: FULL_VALUE_CHARS - 3] + "..."
