"""The window under load, shown while it runs: its progress written to the store every few seconds.

``LiveWindow`` wraps a window's load: a daemon thread reads the listener's samples as they grow
(tasks/load/live.py) and rewrites the run's ``live_windows`` row every LIVE_INTERVAL_S (elapsed,
requests, errors, rps, p50/p95 so far), then marks it done when the load stops. The dashboard
reads it (tasks/results/dashboard/). The display never holds the window back: a write that would
wait more than LIVE_LOCK_TIMEOUT_S for another process's lock, or fails, is skipped.
``PERFAGENTS_LIVE=0`` turns it off; ``PERFAGENTS_LIVE_INTERVAL_S`` sets the interval.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from tasks.load.live import LiveSamples
from tasks.store import Store, now

LIVE_ENV = "PERFAGENTS_LIVE"
INTERVAL_ENV = "PERFAGENTS_LIVE_INTERVAL_S"
LIVE_INTERVAL_S = 2.0
LIVE_LOCK_TIMEOUT_S = 1.0


def live_interval() -> float | None:
    """Seconds between updates, or None when live progress is off."""
    if os.environ.get(LIVE_ENV, "1").strip() == "0":
        return None
    try:
        value = float(os.environ.get(INTERVAL_ENV, LIVE_INTERVAL_S))
    except ValueError:
        return LIVE_INTERVAL_S
    return value if 0.1 <= value <= 3600 else LIVE_INTERVAL_S


class LiveWindow:
    """``with LiveWindow(store, run_id, label, attempt, folder, planned_s, warmup_s):`` around the load."""

    def __init__(self, store: Store, run_id: str, label: str, attempt: int, folder: Path, *,
                 planned_s: float, warmup_s: float) -> None:
        self.path, self.run_id = store.path, run_id
        self.interval = live_interval()
        self.started_at: datetime = now()
        self.samples = LiveSamples(folder, started=time.time(), warmup_s=warmup_s)
        self.row: dict[str, Any] = {"label": label, "attempt": attempt, "started_at": self.started_at,
                                    "planned_s": planned_s}
        self.updates = self.skipped = 0
        self._store: Store | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"live-{label}", daemon=True)

    def __enter__(self) -> Self:
        if self.interval is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.interval is None:
            return
        self._stop.set()
        self._thread.join(timeout=LIVE_LOCK_TIMEOUT_S + 5)
        if not self._thread.is_alive():
            self.update(done=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.update(done=False)
            self._stop.wait(self.interval)

    def update(self, *, done: bool) -> None:
        """Read what the samples gained and rewrite the live row; never raises."""
        try:
            self.samples.read()
            if self._store is None:
                self._store = Store(self.path, lock_timeout_s=LIVE_LOCK_TIMEOUT_S)
            self._store.save_live_window(self.run_id, {**self.row, **self.samples.progress(), "done": done})
            self.updates += 1
        except Exception:  # a display problem must never break or slow a window
            self.skipped += 1
