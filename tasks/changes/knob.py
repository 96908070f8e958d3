"""Set a knob: env knobs restart the target with the new value, http knobs apply live."""

from __future__ import annotations

from typing import Any

import httpx

from tasks.changes.runtime import Runtime
from tasks.errors import RefusedError, TargetUnreachableError
from tasks.spec import HttpApply
from tasks.target import apply_http_knob, restart_target

HTTP_TIMEOUT_S = 10.0


def _set(rt: Runtime, name: str, value: Any) -> None:
    knob = rt.spec.knobs[name]
    new_config = {**rt.config, name: value}
    if isinstance(knob.apply, HttpApply):
        apply_http_knob(rt.handle, name, knob, value)
    else:
        if rt.handle.process is None:
            raise RefusedError(f"knob {name!r} needs a restart, and the target was not started by perfagents")
        rt.handle = restart_target(rt.handle, rt.spec, new_config)
    rt.config = new_config


def apply_set_knob(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    name = params["knob"]
    if name not in rt.spec.knobs:
        raise RefusedError(f"unknown knob {name!r}")
    previous = rt.config.get(name, rt.spec.knobs[name].default)
    _set(rt, name, params["value"])
    return _knob_undo(rt, name, previous)


def provisional_set_knob(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """The undo journaled before the knob moves: its value now."""
    name = params["knob"]
    return _knob_undo(rt, name, rt.config.get(name))


def _knob_undo(rt: Runtime, name: str, previous: Any) -> dict[str, Any]:
    undo: dict[str, Any] = {"knob": name, "value": previous}
    if (http := _http_target(rt, name)) is not None:
        undo["http"] = http
        if rt.spec.start is not None:  # the toolkit started the target: the value lives in its memory
            undo["started_by_run"] = True
    return undo


def _http_target(rt: Runtime, name: str) -> dict[str, Any] | None:
    """Where a live (http) knob is set, so ``perfagents revert`` can set it back without a Runtime."""
    knob = rt.spec.knobs.get(name)
    if knob is None or not isinstance(knob.apply, HttpApply):
        return None
    return {"url": rt.handle.base_url.rstrip("/") + knob.apply.http.path,
            "method": knob.apply.http.method, "field": knob.apply.http.field}


def revert_set_knob(rt: Runtime | None, undo: dict[str, Any]) -> str:
    name, value = undo["knob"], undo["value"]
    if rt is not None:
        _set(rt, name, value)
        return f"knob {name} back to {value!r}"
    http = undo.get("http")
    if not http:
        return f"knob {name} is set at start; the next start uses {value!r}"
    try:
        resp = httpx.request(http["method"], http["url"], json={http["field"]: value}, timeout=HTTP_TIMEOUT_S)
    except httpx.ConnectError as exc:
        if undo.get("started_by_run"):  # the process the run started died with it, and the value with it
            return f"knob {name}: the target the run started is gone, and the live value with it"
        raise TargetUnreachableError(f"cannot restore knob {name}: {http['url']} unreachable ({exc})") from exc
    except httpx.HTTPError as exc:
        raise TargetUnreachableError(f"cannot restore knob {name}: {http['url']} unreachable ({exc})") from exc
    if resp.status_code >= 300:
        raise RefusedError(f"cannot restore knob {name}: {http['url']} answered {resp.status_code}")
    return f"knob {name} back to {value!r}"


def _http_targets(rt: Runtime, names: list[str]) -> dict[str, Any]:
    return {name: http for name in names if (http := _http_target(rt, name)) is not None}


def _set_many(rt: Runtime, config: dict[str, Any]) -> None:
    """Several knobs as one change: live (http) knobs first, then one restart if any env knob moved."""
    unknown = [n for n in config if n not in rt.spec.knobs]
    if unknown:
        raise RefusedError(f"unknown knob {unknown[0]!r}")
    moved = {n: v for n, v in config.items() if rt.config.get(n, rt.spec.knobs[n].default) != v}
    new_config = {**rt.config, **moved}
    if any(not isinstance(rt.spec.knobs[n].apply, HttpApply) for n in moved):
        if rt.handle.process is None:
            raise RefusedError("a knob that needs a restart cannot be set on a target perfagents did not start")
        rt.handle = restart_target(rt.handle, rt.spec, new_config)  # the restart also re-sends http knobs
    else:
        for name, value in moved.items():
            apply_http_knob(rt.handle, name, rt.spec.knobs[name], value)
    rt.config = new_config


def apply_set_config(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    config = dict(params["config"])
    previous = _previous_config(rt, config)
    _set_many(rt, config)
    return {"config": previous, "http": _http_targets(rt, list(previous))}


def provisional_set_config(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """The undo journaled before the knobs move: their values now."""
    previous = _previous_config(rt, params["config"])
    return {"config": previous, "http": _http_targets(rt, list(previous))}


def _previous_config(rt: Runtime, config: dict[str, Any]) -> dict[str, Any]:
    return {n: rt.config.get(n, rt.spec.knobs[n].default) for n in config if n in rt.spec.knobs}


def revert_set_config(rt: Runtime | None, undo: dict[str, Any]) -> str:
    if rt is not None:
        _set_many(rt, dict(undo["config"]))
        return f"knobs back to {undo['config']}"
    notes = []
    for name, value in undo["config"].items():
        http = undo.get("http", {}).get(name)
        notes.append(revert_set_knob(None, {"knob": name, "value": value, **({"http": http} if http else {})}))
    return "; ".join(notes)
