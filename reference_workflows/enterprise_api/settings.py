"""Start-time settings from the environment, and the live config every worker follows.

Start-time (a change needs a restart): ``API_DB`` (required), ``API_WORKERS`` (1),
``API_POOL_SIZE`` (2 connections per worker), ``API_GZIP`` (0), ``API_GZIP_LEVEL`` (9).
Live: ``auth_cache_ttl_s`` (initial value ``API_AUTH_CACHE_TTL_S``, default 0), changed
with ``PUT /admin/config``. The live values sit in a small JSON file (``API_CONFIG_FILE``,
made by the launcher in a private temp folder and inherited by every worker); the worker
that takes the PUT writes it atomically, and each worker polls its mtime every
``WATCH_INTERVAL_S``, so a change is in force everywhere within about half a second.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WATCH_INTERVAL_S = 0.25
MAX_AUTH_CACHE_TTL_S = 3_600
LIVE_DEFAULTS: dict[str, int] = {"auth_cache_ttl_s": 0}
START_ONLY = {"pool_size": "API_POOL_SIZE", "workers": "API_WORKERS", "gzip": "API_GZIP",
              "gzip_level": "API_GZIP_LEVEL"}


class SettingsError(ValueError):
    """An environment variable or a config update with a bad value."""


def env_int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name} must be in {low}..{high}, got {value}")
    return value


def env_bool(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 0 or 1, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    db_url: str
    workers: int = 1
    pool_size: int = 2
    auth_cache_ttl_s: int = 0
    gzip: bool = False
    gzip_level: int = 9
    config_file: Path | None = None


def read_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    db_url = env.get("API_DB", "").strip()
    if not db_url:
        raise SettingsError("API_DB is not set (sqlite:///path or postgresql://user@host:port/db)")
    config_file = env.get("API_CONFIG_FILE", "").strip()
    return Settings(
        db_url=db_url,
        workers=env_int(env, "API_WORKERS", 1, 1, 64),
        pool_size=env_int(env, "API_POOL_SIZE", 2, 1, 256),
        auth_cache_ttl_s=env_int(env, "API_AUTH_CACHE_TTL_S", 0, 0, MAX_AUTH_CACHE_TTL_S),
        gzip=env_bool(env, "API_GZIP"),
        gzip_level=env_int(env, "API_GZIP_LEVEL", 9, 1, 9),
        config_file=Path(config_file) if config_file else None,
    )


def validate_changes(changes: Any) -> dict[str, int]:
    if not isinstance(changes, dict) or not changes:
        raise SettingsError('expected a JSON object such as {"auth_cache_ttl_s": 60}')
    for key in changes:
        if key in START_ONLY:
            raise SettingsError(f"{key} is set at start ({START_ONLY[key]}); it cannot change live")
        if key not in LIVE_DEFAULTS:
            raise SettingsError(f"unknown setting {key!r} (live settings: {', '.join(LIVE_DEFAULTS)})")
    ttl = changes.get("auth_cache_ttl_s", 0)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_AUTH_CACHE_TTL_S:
        raise SettingsError(f"auth_cache_ttl_s must be an integer in 0..{MAX_AUTH_CACHE_TTL_S}, got {ttl!r}")
    return dict(changes)


def write_live_file(path: Path, values: dict[str, int]) -> None:
    """Replace the live config file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(values))
    os.replace(tmp, path)


def read_live_file(path: Path) -> dict[str, int]:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return dict(LIVE_DEFAULTS)
    if not isinstance(stored, dict):
        return dict(LIVE_DEFAULTS)
    return {**LIVE_DEFAULTS, **{k: v for k, v in stored.items() if k in LIVE_DEFAULTS}}


class LiveConfig:
    """The live settings of one worker, kept in step with the shared file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values = read_live_file(path)
        self._stamp = self._file_stamp()

    @property
    def auth_cache_ttl_s(self) -> int:
        return self.values["auth_cache_ttl_s"]

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def refresh(self) -> bool:
        """Re-read the file if it changed; whether it did."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self.values = read_live_file(self.path)
        return True

    def update(self, changes: Any) -> dict[str, int]:
        """Validate, write for every worker, and apply in this one at once."""
        values = {**read_live_file(self.path), **validate_changes(changes)}
        write_live_file(self.path, values)
        self.values = values
        self._stamp = self._file_stamp()
        return values

    async def watch(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Poll the file until cancelled (run as a task in each worker's lifespan)."""
        while True:
            await asyncio.sleep(interval_s)
            self.refresh()
