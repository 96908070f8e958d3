"""Settings shared by worker processes through a file, and the TTL response cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.responses import Response

from reference_workflows.ecommerce.live_config import (
    ConfigError,
    LiveConfig,
    config_path,
    init_config,
)
from reference_workflows.ecommerce.response_cache import ResponseCache


def test_an_update_in_one_process_reaches_another(tmp_path: Path) -> None:
    path = config_path(tmp_path / "shop.db")
    init_config(path, None)
    writer, reader = LiveConfig(path, check_interval_s=0.05), LiveConfig(path, check_interval_s=0.05)
    assert reader.cache_ttl_s == 0
    assert writer.update({"cache_ttl_s": 12}) == {"cache_ttl_s": 12}
    time.sleep(0.1)
    assert reader.cache_ttl_s == 12
    assert init_config(path, None) == {"cache_ttl_s": 12}  # a restart keeps it
    assert init_config(path, 3) == {"cache_ttl_s": 3}  # an explicit SHOP_CACHE_TTL_S wins


@pytest.mark.parametrize("bad", [{}, [], {"cache_ttl_s": -1}, {"cache_ttl_s": "5"}, {"cache_ttl_s": True},
                                 {"cache_ttl_s": 10**6}, {"other": 1}])
def test_bad_updates_are_refused(tmp_path: Path, bad: object) -> None:
    live = LiveConfig(config_path(tmp_path / "shop.db"))
    with pytest.raises(ConfigError):
        live.update(bad)
    assert live.cache_ttl_s == 0


def test_cache_entries_follow_the_ttl_in_force() -> None:
    cache = ResponseCache(max_entries=2)
    cache.put("a", Response(b"A", media_type="text/plain"))
    hit = cache.get("a", ttl_s=60)
    assert hit is not None and hit.body == b"A" and hit.headers["content-type"].startswith("text/plain")
    assert cache.get("a", ttl_s=0) is None  # a lower TTL applies at once
    for key in "abc":
        cache.put(key, Response(key.encode()))
    assert len(cache) == 2 and cache.get("a", 60) is None  # least recently used goes first
