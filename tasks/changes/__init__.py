"""Reversible changes: each kind applies itself and returns the exact undo it needs.

A change's ``undo`` is self-contained JSON (paths, URLs, previous values), so
``perfagents revert`` can restore the target from the journal alone, after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.changes import index, knob
from tasks.changes.runtime import Runtime

Apply = Callable[[Runtime, dict[str, Any]], dict[str, Any]]
Revert = Callable[[Runtime | None, dict[str, Any]], str]

# kind -> (apply, revert). revert(None, undo) must work without a live target (after a crash).
CHANGE_KINDS: dict[str, tuple[Apply, Revert]] = {
    "create_index": (index.apply_create_index, index.revert_create_index),
    "set_knob": (knob.apply_set_knob, knob.revert_set_knob),
}

__all__ = ["CHANGE_KINDS", "Runtime"]
