"""The change journal: every change is written (planned) before it is applied.

planned -> applied -> kept | reverted, or failed. A run killed at any point leaves rows in
planned/applied; ``revert_pending`` undoes them from their stored ``undo`` alone.
"""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

from tasks.changes import CHANGE_KINDS, Runtime
from tasks.db.redact import redact_url
from tasks.errors import InputError, PerfagentsError, RefusedError
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
    kind = CHANGE_KINDS[candidate.kind]
    # Record the undo *intent* first, so a crash mid-apply still knows what to undo.
    provisional = kind.provisional_undo(rt, dict(candidate.params))
    mark_change(store, change_id, "planned", undo=provisional)
    crash_point("after_journal")
    try:
        undo = kind.apply(rt, dict(candidate.params))
    except RefusedError as exc:  # refused before anything changed: nothing to put back
        mark_change(store, change_id, "failed", reason=str(exc))
        raise
    except PerfagentsError as exc:
        try:
            kind.revert(rt, provisional)  # put back whatever half-applied
        except PerfagentsError:
            pass
        mark_change(store, change_id, "failed", reason=str(exc))
        raise
    crash_point("after_apply")
    mark_change(store, change_id, "applied", undo=undo)
    return undo


CRASH_ENV = "PERFAGENTS_CRASH_AT"  # benchmarks/kill_campaign.py: SIGKILL this process at that point


def crash_point(name: str) -> None:
    """A failpoint: with ``PERFAGENTS_CRASH_AT=<name>`` the run SIGKILLs itself here, so the kill
    campaign can hit the narrow windows between journaling, applying and marking a change."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def revert_change(store: Store, rt: Runtime | None, change_id: str, kind: str, undo: dict[str, Any], reason: str,
                  effect: dict[str, Any] | None = None) -> str:
    """Put a change back and journal it reverted (with the measured ``effect`` that decided it, if any)."""
    note = CHANGE_KINDS[kind].revert(rt, undo)
    mark_change(store, change_id, "reverted", reason=reason, effect=effect)
    return note


def open_changes(store: Store, target: str | None = None) -> list[dict[str, Any]]:
    """Changes a crash left planned or applied, newest first (the order to undo them)."""
    return store.open_changes(target)


def refuse_open_changes(store: Store, target: str, store_path: object) -> None:
    """A run left changes applied (it was killed before it could settle them): a new run on top of
    them would measure a baseline that is not the target's own, so it does not start."""
    left = store.open_changes(target)
    if left:
        runs = sorted({row["run_id"] for row in left})
        raise InputError(f"target {target} has {len(left)} change(s) left open by run {', '.join(runs)} "
                         f"(interrupted): run `perfagents revert --store {store_path}` first")


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
            note = f"{REVERT_FAILED}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a driver's or the target's error: the other changes still get their turn
            note = f"{REVERT_FAILED}: {type(exc).__name__}: {redact_url(' '.join(str(exc).split()))}"
        done.append((row, note))
    return done


REVERT_FAILED = "could not revert"  # the change stays `applied`: the next `perfagents revert` tries again
