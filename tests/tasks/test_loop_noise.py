"""Noise floors of quick-win: an endpoint's own, and a state's own after a change moved p95 several-fold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from tasks import loop
from tasks.loop import endpoint_noise, refresh_noise


def baseline_window(seed: int, slow_share: float) -> SimpleNamespace:
    """A steady catalog (lognormal around 5 ms) beside a slow tail that decides the total's p95."""
    rng = np.random.default_rng(seed)
    n_catalog, n_slow, n_rare = 2000, int(2000 * slow_share), 20
    latencies = np.concatenate([rng.lognormal(np.log(5.0), 0.3, n_catalog), rng.lognormal(np.log(300.0), 0.2, n_slow),
                                rng.lognormal(np.log(5.0), 0.3, n_rare)])
    names = ["catalog"] * n_catalog + ["orders"] * n_slow + ["rare"] * n_rare
    return SimpleNamespace(samples=pl.DataFrame({"endpoint": names, "latency_ms": latencies,
                                                 "ts": np.linspace(0.0, 20.0, len(names))}), valid=True, findings=[])


def test_an_endpoint_gets_its_own_floor_and_a_rare_one_the_totals() -> None:
    run = SimpleNamespace(noise_rel=1.378, extra={}, aa_windows=[baseline_window(0, 0.04), baseline_window(1, 0.07)])
    catalog = endpoint_noise(run, "catalog")
    assert 0.02 <= catalog < 0.2  # a few percent, not the total's 1.378
    assert endpoint_noise(run, "rare") == 1.378  # 20 requests a window: too few for a floor of its own
    assert endpoint_noise(run, None) == 1.378
    assert run.extra["noise"]["endpoint_p95_rel"] == {"catalog": catalog, "rare": 1.378}


def test_one_baseline_window_leaves_the_totals_floor() -> None:
    run = SimpleNamespace(noise_rel=0.1, extra={}, aa_windows=[baseline_window(0, 0.05)])
    assert endpoint_noise(run, "catalog") == 0.1


class Ledger:
    def __init__(self, windows_left: int) -> None:
        self.windows_left = windows_left

    def exhausted_by(self, next_load_s: float = 0.0, next_iteration: bool = True) -> str | None:
        return None if next_load_s <= self.windows_left * 10.0 else "minutes"


def indexed_run(windows_left: int) -> SimpleNamespace:
    """The state after a kept index: a steady shop (no slow tail) judged so far with the unindexed floor."""
    kept = baseline_window(10, 0.0)
    return SimpleNamespace(noise_rel=1.378, noise_rps_rel=0.3, extra={"noise": {"endpoint_p95_rel": {"catalog": 0.9}}},
                           aa_windows=[kept], current=kept, noise_stale=True, seq=1, findings=[],
                           ledger=Ledger(windows_left))


def test_a_moved_state_measures_its_own_floor_before_the_next_change(monkeypatch: pytest.MonkeyPatch) -> None:
    labels: list[str] = []

    def measure(run, label, change_id=None, *, agents=None):
        labels.append(label)
        return baseline_window(20 + len(labels), 0.0)

    monkeypatch.setattr(loop, "measure", measure)
    run = indexed_run(windows_left=10)
    refresh_noise(run, window_s=10.0)
    assert labels[:2] == ["aa-1-1", "aa-1-2"] and len(labels) <= loop.MAX_BASELINE_WINDOWS  # as many as asked
    assert run.noise_rel < 0.2 and not run.noise_stale  # the steady state's, not the unindexed 1.378
    assert run.current is run.aa_windows[-1] and len(run.aa_windows) == len(labels)  # the kept window left out
    (state,) = run.extra["noise"]["after_changes"]
    assert state["after_change"] == 1 and state["p95_rel"] == run.noise_rel
    assert endpoint_noise(run, "catalog") < 0.2  # the new state's endpoint floor
    assert run.extra["noise"]["endpoint_p95_rel"] == {"catalog": 0.9}  # the baseline's stays as it was


def test_no_room_for_another_window_and_a_change_keeps_the_old_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "measure", lambda *a, **k: pytest.fail("measured without budget"))
    run = indexed_run(windows_left=2)  # room for the change and one A/A window, not the two a floor needs
    refresh_noise(run, window_s=10.0)
    assert run.noise_rel == 1.378 and not run.noise_stale and "after_changes" not in run.extra["noise"]
