"""Reversible changes: each kind applies itself and returns the exact undo it needs.

A change's ``undo`` is self-contained JSON (paths, URLs, previous values), so
``perfagents revert`` can restore the target from the journal alone, after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.changes import index, knob, pg_index
from tasks.changes.runtime import Runtime
from tasks.db.postgres import is_postgres_url

Apply = Callable[[Runtime, dict[str, Any]], dict[str, Any]]
Revert = Callable[[Runtime | None, dict[str, Any]], str]


def apply_create_index(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """SQLite (tasks.changes.index) or PostgreSQL (tasks.changes.pg_index), by the URL's scheme."""
    return (pg_index if is_postgres_url(rt.database_url) else index).apply_create_index(rt, params)


def revert_create_index(rt: Runtime | None, undo: dict[str, Any]) -> str:
    return (pg_index if is_postgres_url(undo.get("database_url")) else index).revert_create_index(rt, undo)


# kind -> (apply, revert). revert(None, undo) must work without a live target (after a crash).
CHANGE_KINDS: dict[str, tuple[Apply, Revert]] = {
    "create_index": (apply_create_index, revert_create_index),
    "set_knob": (knob.apply_set_knob, knob.revert_set_knob),
    "set_config": (knob.apply_set_config, knob.revert_set_config),
}

__all__ = ["CHANGE_KINDS", "Runtime"]
