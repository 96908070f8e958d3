"""The change journal: every change is written (planned) before it is applied.

planned -> applied -> kept | reverted, or failed. A run killed at any point leaves rows in
planned/applied; ``revert_pending`` undoes them from their stored ``undo`` alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from tasks.changes import CHANGE_KINDS, Runtime
from tasks.changes.knob import http_undo
from tasks.db.postgres import is_postgres_url, strip_password
from tasks.errors import PerfagentsError, RefusedError
from tasks.findings import Candidate
from tasks.store import Store

OPEN_STATES = ("planned", "applied")


def plan_change(store: Store, run_id: str, target: str, seq: int, candidate: Candidate) -> str:
    change_id = uuid.uuid4().hex[:12]
    store.insert_change(change_id, run_id=run_id, target=target, seq=seq, kind=candidate.kind,
                        params=candidate.params, description=candidate.description, risk=candidate.risk)
    return change_id


def mark_change(
    store: Store, change_id: str, status: str, *, reason: str | None = None,
    effect: dict[str, Any] | None = None, undo: dict[str, Any] | None = None,
) -> None:
    store.update_change(change_id, status, reason=reason, effect=effect, undo=undo)


def apply_candidate(store: Store, rt: Runtime, change_id: str, candidate: Candidate) -> dict[str, Any]:
    """Apply a planned change; its undo is journaled the moment it is known."""
    apply, _ = CHANGE_KINDS[candidate.kind]
    # Record the undo *intent* first, so a crash mid-apply still knows what to undo.
    provisional = provisional_undo(rt, candidate)
    mark_change(store, change_id, "planned", undo=provisional)
    try:
        undo = apply(rt, dict(candidate.params))
    except RefusedError as exc:  # refused before anything changed: nothing to put back
        mark_change(store, change_id, "failed", reason=str(exc))
        raise
    except PerfagentsError as exc:
        _, revert = CHANGE_KINDS[candidate.kind]
        try:
            revert(rt, provisional)  # put back whatever half-applied
        except PerfagentsError:
            pass
        mark_change(store, change_id, "failed", reason=str(exc))
        raise
    mark_change(store, change_id, "applied", undo=undo)
    return undo


def provisional_undo(rt: Runtime, candidate: Candidate) -> dict[str, Any]:
    """What revert would need if the process died while applying the change."""
    if candidate.kind == "create_index":
        url = rt.database_url or ""
        index_undo: dict[str, Any] = {"database_url": strip_password(url) if is_postgres_url(url) else url,
                "index": candidate.params["name"]}
        if "schema" in candidate.params:
            index_undo["schema"] = candidate.params["schema"]
        return index_undo
    if candidate.kind == "set_config":
        names = [n for n in candidate.params["config"] if n in rt.spec.knobs]
        return {"config": {n: rt.config.get(n, rt.spec.knobs[n].default) for n in names},
                "http": http_undo(rt, names)}
    if candidate.kind == "set_knob":
        name = candidate.params["knob"]
        knob = rt.spec.knobs.get(name)
        undo: dict[str, Any] = {"knob": name, "value": rt.config.get(name)}
        http = getattr(getattr(knob, "apply", None), "http", None)
        if http is not None:
            undo["http"] = {"url": rt.handle.base_url.rstrip("/") + http.path,
                            "method": http.method, "field": http.field}
        return undo
    return {}


def revert_change(store: Store, rt: Runtime | None, change_id: str, kind: str, undo: dict[str, Any], reason: str) -> str:
    _, revert = CHANGE_KINDS[kind]
    note = revert(rt, undo)
    mark_change(store, change_id, "reverted", reason=reason)
    return note


def open_changes(store: Store, target: str | None = None) -> list[dict[str, Any]]:
    """Changes a crash left planned or applied, newest first (the order to undo them)."""
    return store.open_changes(target)


def revert_pending(store: Store, target: str | None = None) -> list[tuple[dict[str, Any], str]]:
    """Undo every open change from the journal alone; returns (change, note) pairs."""
    done = []
    for row in open_changes(store, target):
        if not row["undo"]:
            mark_change(store, row["change_id"], "failed", reason="no undo recorded; nothing was applied")
            done.append((row, "nothing to undo"))
            continue
        try:
            note = revert_change(store, None, row["change_id"], row["kind"], row["undo"],
                                 "reverted by `perfagents revert` after an interrupted run")
        except PerfagentsError as exc:
            note = f"could not revert: {exc}"
        done.append((row, note))
    return done
