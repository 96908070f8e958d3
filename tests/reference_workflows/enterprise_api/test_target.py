"""target.yaml validates against the spec contract; the locustfile drives the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reference_workflows.enterprise_api.launch import RunningApp
from tasks.spec import load_spec

PACKAGE = Path(__file__).resolve().parents[3] / "reference_workflows" / "enterprise_api"
LOCUST_NAMES = {"invoices_page", "invoices_deep", "revenue_report", "account", "create_invoice", "export"}


def test_target_spec_uses_one_database_url_everywhere():
    spec = load_spec(PACKAGE / "target.yaml")
    assert spec.name == "enterprise-api" and load_spec("enterprise-api").name == spec.name
    assert spec.start is not None and spec.database is not None and spec.database.allow_ddl
    url = spec.database.url
    assert spec.start.env["API_DB"] == url == "sqlite:///{workdir}/api.db"
    assert spec.setup == [["python", "-m", "reference_workflows.enterprise_api.seed", "--db", url]]
    assert (spec.spec_dir / spec.start.cwd).resolve() == PACKAGE.parents[1]
    assert spec.default_config() == {"workers": 1, "pool_size": 2, "auth_cache_ttl_s": 0, "gzip": False,
                                     "gzip_level": 9}
    assert spec.knobs["pool_size"].values() == list(range(1, 17))
    assert not spec.knobs["auth_cache_ttl_s"].needs_restart and spec.knobs["workers"].needs_restart


@pytest.mark.timeout(90)
def test_locustfile_drives_every_named_request_without_failures(default_app: RunningApp, tmp_path: Path):
    source = (PACKAGE / "locustfile.py").read_text()
    assert all(f'"{name}"' in source for name in LOCUST_NAMES)
    locust = Path(sys.executable).with_name("locust")
    done = subprocess.run(
        [str(locust), "-f", str(PACKAGE / "locustfile.py"), "--headless", "-u", "6", "-r", "6",
         "-t", "6s", "-H", default_app.base_url, "--json", "--only-summary", "--loglevel", "WARNING"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]
    stats = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(stats) <= LOCUST_NAMES and {"invoices_page", "account"} <= set(stats)
    assert len(stats) >= 4
    assert all(row["num_failures"] == 0 for row in stats.values()), done.stdout[-2000:]
