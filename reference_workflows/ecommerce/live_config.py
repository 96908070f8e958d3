"""Runtime settings every worker process sees within a fraction of a second.

The settings live in a small JSON file beside the database (``<db>.config.json``), written
atomically; each worker re-reads it when its inode or mtime changed, checking at most every
``CHECK_INTERVAL_S`` on the request path and always for GET /admin/config. A PUT
/admin/config in one worker is thus in force in all of them within ~0.1 s, any GET after
the PUT returns the new value, and it survives a restart (the seed script removes it with
the database).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

CONFIG_SUFFIX = ".config.json"
CHECK_INTERVAL_S = 0.1
MAX_CACHE_TTL_S = 86_400
DEFAULTS: dict[str, int] = {"cache_ttl_s": 0}


class ConfigError(ValueError):
    """A settings update that does not validate."""


def config_path(db: Path | str) -> Path:
    return Path(f"{db}{CONFIG_SUFFIX}")


def validate_changes(changes: Any) -> dict[str, int]:
    if not isinstance(changes, dict) or not changes:
        raise ConfigError('expected a JSON object such as {"cache_ttl_s": 30}')
    unknown = sorted(set(changes) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} (known: {', '.join(DEFAULTS)})")
    ttl = changes.get("cache_ttl_s", 0)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_CACHE_TTL_S:
        raise ConfigError(f"cache_ttl_s must be an integer in 0..{MAX_CACHE_TTL_S}, got {ttl!r}")
    return dict(changes)


def write_config(path: Path, values: dict[str, int]) -> None:
    """Replace the settings file atomically (readers see the old or the new file, whole)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(values))
    os.replace(tmp, path)


def read_config(path: Path) -> dict[str, int]:
    try:
        stored = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return dict(DEFAULTS)
    return {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}


def init_config(path: Path, cache_ttl_s: int | None) -> dict[str, int]:
    """At server start: an explicit SHOP_CACHE_TTL_S wins, else the stored value, else 0."""
    values = read_config(path)
    if cache_ttl_s is not None:
        values.update(validate_changes({"cache_ttl_s": cache_ttl_s}))
    write_config(path, values)
    return values


class LiveConfig:
    """The settings in force, re-read from the file when it changed."""

    def __init__(self, path: Path, check_interval_s: float = CHECK_INTERVAL_S) -> None:
        self.path = path
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._values = read_config(path)
        self._stamp = self._file_stamp()
        self._checked_at = time.monotonic()

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def values(self, *, fresh: bool = False) -> dict[str, int]:
        """The settings in force; ``fresh`` checks the file now instead of within the interval."""
        now = time.monotonic()
        if fresh or now - self._checked_at >= self.check_interval_s:
            with self._lock:
                self._checked_at = now
                stamp = self._file_stamp()
                if stamp != self._stamp:
                    self._stamp = stamp
                    self._values = read_config(self.path)
        return self._values

    @property
    def cache_ttl_s(self) -> int:
        return self.values()["cache_ttl_s"]

    def update(self, changes: Any) -> dict[str, int]:
        """Validate, persist for every worker, and apply here at once."""
        valid = validate_changes(changes)
        with self._lock:
            values = {**read_config(self.path), **valid}
            write_config(self.path, values)
            self._values = values
            self._stamp = self._file_stamp()
            self._checked_at = time.monotonic()
        return values
