"""Reading a target spec file safely: bounded in bytes and in values, UTF-8, one error line each.

A spec is user input: a binary file, a 10 MB file, YAML nested a thousand deep, or an alias bomb
(435 bytes that expand to 39 MB once stored) each end as one SpecError naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasks.errors import SpecError

MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_VALUES = 20_000  # after YAML aliases are expanded: an alias bomb stops here


def read_yaml(path: Path) -> tuple[str, Any]:
    """(text, parsed) of a spec file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: {len(data)} bytes; a target spec is at most {MAX_SPEC_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return text, parse_yaml(path, text)


def parse_yaml(path: Path, text: str) -> Any:
    try:
        raw = yaml.safe_load(text)
        check_size(raw, path)
    except RecursionError as exc:
        raise SpecError(f"{path}: nested too deeply") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    except SpecError:
        raise
    except Exception as exc:  # a tag its value does not fit: `!!int name`, `!!bool maybe`, `!!timestamp 2024-13-01`
        detail = ascii(" ".join(str(exc).split())[:80])[1:-1]
        raise SpecError(f"{path}: not valid YAML (a tagged value: {type(exc).__name__} {detail})") from exc
    return raw


def check_size(raw: Any, path: Path) -> None:
    """Refuse a spec whose values, aliases expanded, number more than MAX_SPEC_VALUES, and text no
    command, environment or terminal takes: a NUL ("\\0") or a lone surrogate ("\\ud800")."""
    seen, stack = 0, [raw]
    while stack:
        value = stack.pop()
        seen += 1
        if seen > MAX_SPEC_VALUES:
            raise SpecError(f"{path}: more than {MAX_SPEC_VALUES} values once YAML aliases are expanded")
        if isinstance(value, str) and ("\x00" in value or not value.isascii() and _not_utf8(value)):
            raise SpecError(f"{path}: {ascii(value[:60])} holds a NUL or a lone surrogate character")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
