"""The nightly regression check as the Prefect flow `check-regressions` (prefect.yaml: `check-regressions/nightly`).

It judges the store's run signatures as `perfagents regressions` does (tasks/results/regressions.py)
and emits a Prefect event per confirmed, open regression: REGRESSION_EVENT, about the target
(resource ``perfagents.target.<name>``), the regression in its payload. An automation turns that
event into a notification (automations/regression.yaml). Every check also emits CHECKED_EVENT with
its counts, the sign that the night's check ran at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tasks.errors import InputError, StoreLockedError
from tasks.results.regressions import find_regressions, render_regressions
from tasks.store import DEFAULT_STORE, Store

REGRESSION_EVENT = "perfagents.regression.confirmed"
CHECKED_EVENT = "perfagents.regressions.checked"
PAYLOAD_KEYS = ("target", "endpoint", "metric", "run_id", "started_at", "before", "after", "size", "ci95",
                "false_alarm_rate", "null_series", "runs_after")
# A nightly optimization run holds the store's one writer lock while it runs (the reference shop's
# nightly: 10 minutes from 03:00 UTC): a check that finds the store locked waits and tries again.
LOCK_RETRIES = 12
LOCK_RETRY_DELAY_S = 300


def _store_locked(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except StoreLockedError:
        return True
    except Exception:
        return False
    return False


def target_resource(target: str) -> dict[str, str]:
    return {"prefect.resource.id": f"perfagents.target.{target}", "prefect.resource.name": target}


def regression_events(found: dict[str, Any]) -> list[dict[str, Any]]:
    """``emit_event`` arguments: one REGRESSION_EVENT per confirmed regression that is still open."""
    return [{"event": REGRESSION_EVENT, "resource": target_resource(r["target"]),
             "payload": {k: r[k] for k in PAYLOAD_KEYS}}
            for r in found["regressions"] if r["status"] == "confirmed" and r["open"]]


@task(name="find-regressions", retries=LOCK_RETRIES, retry_delay_seconds=LOCK_RETRY_DELAY_S,
      retry_condition_fn=_store_locked, cache_policy=NO_CACHE, persist_result=False)
def read_regressions(store: Path, target: str | None) -> dict[str, Any]:
    if not store.is_file():
        raise InputError(f"no store at {store}")
    with Store(store, read_only=True) as st:
        if target is not None and target not in st.signature_targets():
            raise InputError(f"no signatures of target {target!r} in {store}")
        return find_regressions(st, target)


@flow(name="check-regressions", log_prints=True)
def check_regressions(target: str | None = None, store: str = str(DEFAULT_STORE)) -> dict[str, Any]:
    """Find change points in each target's run signatures; emit an event per confirmed, open regression.

    Args:
        target: only this target's history (default: every target in the store).
        store: the DuckDB store (relative to the repo root in a deployment).
    """
    found = read_regressions(Path(store), target)
    events = regression_events(found)
    for kwargs in events:
        emit_event(**kwargs)
    emit_event(event=CHECKED_EVENT,
               resource={"prefect.resource.id": f"perfagents.regressions.{target or 'all'}"},
               payload={"target": target, "series": found["series"], "regressions": len(found["regressions"]),
                        "open_confirmed": found["open_confirmed"], "not_judged": len(found["not_judged"])})
    create_markdown_artifact(markdown=render_regressions(found), key=f"regressions-{target or 'all'}",
                             description="confirmed and suspected regressions in the run signatures")
    print(f"{found['series']} series judged, {len(found['regressions'])} regression(s), "
          f"{found['open_confirmed']} confirmed and open: {len(events)} {REGRESSION_EVENT} event(s)")
    return found
