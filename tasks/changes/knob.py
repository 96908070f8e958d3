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
    knob = rt.spec.knobs[name]
    undo: dict[str, Any] = {"knob": name, "value": previous}
    if isinstance(knob.apply, HttpApply):
        undo["http"] = {
            "url": rt.handle.base_url.rstrip("/") + knob.apply.http.path,
            "method": knob.apply.http.method,
            "field": knob.apply.http.field,
        }
    return undo


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
    except httpx.HTTPError as exc:
        raise TargetUnreachableError(f"cannot restore knob {name}: {http['url']} unreachable ({exc})") from exc
    if resp.status_code >= 300:
        raise RefusedError(f"cannot restore knob {name}: {http['url']} answered {resp.status_code}")
    return f"knob {name} back to {value!r}"
