"""Reversible changes: each kind applies itself and returns the exact undo it needs.

A change's ``undo`` is self-contained JSON (paths, URLs, previous values), so
``perfagents revert`` can restore the target from the journal alone, after a crash. Each kind
also says what its undo would be before it applies (``provisional_undo``): the journal records
it first, so a crash mid-apply still knows what to put back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.changes import code_patch, index, knob, pg_index
from tasks.changes.runtime import Runtime
from tasks.db.url import is_postgres_url

Apply = Callable[[Runtime, dict[str, Any]], dict[str, Any]]
Revert = Callable[[Runtime | None, dict[str, Any]], str]


@dataclass(frozen=True)
class ChangeKind:
    apply: Apply  # (rt, params) -> the exact undo
    revert: Revert  # (rt, undo) -> a note; must work with rt None (no live target, after a crash)
    provisional_undo: Apply  # (rt, params) -> what revert needs if the process dies while applying
    sets_knobs: bool = False  # part of the target's config (a restart or a start config brings it back)


def apply_create_index(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """SQLite (tasks.changes.index) or PostgreSQL (tasks.changes.pg_index), by the URL's scheme."""
    return (pg_index if is_postgres_url(rt.database_url) else index).apply_create_index(rt, params)


def revert_create_index(rt: Runtime | None, undo: dict[str, Any]) -> str:
    return (pg_index if is_postgres_url(undo.get("database_url")) else index).revert_create_index(rt, undo)


def provisional_create_index(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    return (pg_index if is_postgres_url(rt.database_url) else index).provisional_create_index(rt, params)


CHANGE_KINDS: dict[str, ChangeKind] = {
    "create_index": ChangeKind(apply_create_index, revert_create_index, provisional_create_index),
    "set_knob": ChangeKind(knob.apply_set_knob, knob.revert_set_knob, knob.provisional_set_knob, sets_knobs=True),
    "set_config": ChangeKind(knob.apply_set_config, knob.revert_set_config, knob.provisional_set_config,
                             sets_knobs=True),
    "code_patch": ChangeKind(code_patch.apply_code_patch, code_patch.revert_code_patch,
                             code_patch.provisional_code_patch),
}
KNOB_KINDS = tuple(name for name, kind in CHANGE_KINDS.items() if kind.sets_knobs)  # every other kind is state

__all__ = ["CHANGE_KINDS", "KNOB_KINDS", "ChangeKind", "Runtime"]
