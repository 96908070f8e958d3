"""The names perfagents gives the indexes it proposes and creates, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import re

INDEX_NAME_PREFIX = "perfagents_"
INDEX_NAME_MAX = 60


def index_name(table: str, columns: list[str]) -> str:
    """``perfagents_<table>_<cols>``: [a-z0-9_] only, bounded; a digest keeps lossy names distinct."""
    raw = "_".join([table, *columns])
    slug = re.sub(r"[^a-z0-9_]+", "_", raw.lower()).strip("_")
    name = INDEX_NAME_PREFIX + slug
    if slug != raw or len(name) > INDEX_NAME_MAX:
        name = name[: INDEX_NAME_MAX - 9] + "_" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    return name
