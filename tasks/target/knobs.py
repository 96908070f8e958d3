"""Knob values in effect on a target: env variables at start, live HTTP settings."""

from __future__ import annotations

from typing import Any

import httpx

from tasks.errors import RefusedError, SpecError, TargetUnreachableError
from tasks.spec import BoolKnob, EnvApply, HttpApply, HttpTarget, Knob, TargetSpec
from tasks.target.handle import TargetHandle, describe_error, join_url, one_line

HTTP_KNOB_TIMEOUT_S = 10.0


def full_config(spec: TargetSpec, config: dict[str, Any] | None) -> dict[str, Any]:
    """Every knob's value: the spec defaults overridden by ``config`` (unknown knob: SpecError)."""
    unknown = sorted(set(config or {}) - set(spec.knobs))
    if unknown:
        known = ", ".join(spec.knobs) or "none"
        raise SpecError(f"unknown knob {unknown[0]!r} for target {spec.name} (knobs: {known})")
    return {**spec.default_config(), **(config or {})}


def knob_env(spec: TargetSpec, config: dict[str, Any] | None) -> dict[str, str]:
    """Environment variables for the knobs applied via ``env`` (bools as "1"/"0")."""
    values = full_config(spec, config)
    env: dict[str, str] = {}
    for name, knob in spec.knobs.items():
        if isinstance(knob.apply, EnvApply):
            value = values[name]
            boolish = isinstance(knob, BoolKnob) or isinstance(value, bool)
            env[knob.apply.env] = ("1" if value else "0") if boolish else str(value)
    return env


def apply_http_knob(handle: TargetHandle, knob_name: str, knob: Knob, value: Any) -> None:
    """Send ``{field: value}`` to the knob's endpoint; a non-2xx answer is a RefusedError."""
    http = _http_target(knob_name, knob)
    url = join_url(handle.base_url, http.path)
    try:
        resp = httpx.request(http.method, url, json={http.field: value}, timeout=HTTP_KNOB_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise TargetUnreachableError(
            f"cannot set knob {knob_name}: {url} is unreachable: {describe_error(exc)}"
        ) from exc
    if not resp.is_success:
        raise RefusedError(
            f"target refused knob {knob_name}={value!r}: {http.method} {url} answered "
            f"{resp.status_code} {one_line(resp.text)}".rstrip()
        )
    handle.config[knob_name] = value


def read_http_knob(handle: TargetHandle, knob_name: str, knob: Knob) -> Any | None:
    """The knob's current value if its endpoint answers GET with a JSON object holding it."""
    http = _http_target(knob_name, knob)
    url = join_url(handle.base_url, http.path)
    try:
        resp = httpx.get(url, timeout=HTTP_KNOB_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise TargetUnreachableError(
            f"cannot read knob {knob_name}: {url} is unreachable: {describe_error(exc)}"
        ) from exc
    try:
        data = resp.json() if resp.is_success else None
    except ValueError:
        return None
    return data.get(http.field) if isinstance(data, dict) else None


def apply_http_config(handle: TargetHandle, spec: TargetSpec, values: dict[str, Any]) -> None:
    """Set the http knobs whose value differs from the spec default (a fresh target has those)."""
    for name, knob in spec.knobs.items():
        if isinstance(knob.apply, HttpApply) and values[name] != knob.default:
            apply_http_knob(handle, name, knob, values[name])


def _http_target(knob_name: str, knob: Knob) -> HttpTarget:
    if not isinstance(knob.apply, HttpApply):
        raise SpecError(f"knob {knob_name!r} is applied via env, not http")
    return knob.apply.http
