"""The nightly regression check on a real `prefect server`: a planted regression reaches the server
as a perfagents.regression.confirmed event, and the documented automation (automations/regression.yaml,
created with `prefect automation create --from-file`) turns it into a notification that a local
webhook receives; a clean history emits the check's event and no regression event; and the
`check-regressions/nightly` deployment of prefect.yaml runs the same check through a process worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.regressions import CHECKED_EVENT, REGRESSION_EVENT, regression_events
from tasks.results.regressions import find_regressions
from tasks.store import Store

ROOT = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).with_name("prefect")
AUTOMATION = ROOT / "automations" / "regression.yaml"
CLI_TIMEOUT_S = 60
FLOW_TIMEOUT_S = 90
EVENT_WAIT_S = 45
EVENTS_PAGE = 50  # the server's most per page
POOL = "perfagents-regressions-test"  # not test_deployments' pool: the two modules may share a server
WORKER_RUN_TIMEOUT_S = 150
UUID = re.compile(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
CHECK = ("import sys\nfrom flows.regressions import check_regressions\n"
         "state = check_regressions(store=sys.argv[1], return_state=True)\n"
         "print('FLOW_RUN', state.state_details.flow_run_id, state.type.value)\n")

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(240)]


def fill(path: Path, add_history_run, *, step_from: int | None, runs: int = 8) -> None:
    """Runs of target `shop`; from run ``step_from`` on, checkout is 1.3x slower."""
    with Store(path) as store:
        for i in range(runs):
            slow = {"checkout": 1.3} if step_from is not None and i >= step_from else {}
            add_history_run(store, f"shop-run{i}", day=i, scale=slow, seed=100 + i)


class Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def alerts(prefect_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A webhook receiver on loopback, a Custom Webhook notification block pointing at it, and the
    repo's automation created from its file (the block's id filled in) through the Prefect CLI."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("regression-alerts")
    env = {**prefect_server.child_env(tmp / "home"), "PYTHONPATH": str(ROOT)}
    Webhook.received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            block_id = CustomWebhookNotificationBlock(
                name="perfagents", url=f"http://127.0.0.1:{receiver.server_port}/notify",
                json_data={"subject": "{{subject}}", "body": "{{body}}"}).save("perfagents-regressions", overwrite=True)
        as_shipped = prefect_cli(["automation", "create", "--from-file", str(AUTOMATION)], env)
        assert as_shipped.returncode == 1 and "block_document_id" in as_shipped.stdout + as_shipped.stderr
        automation = yaml.safe_load(AUTOMATION.read_text())
        automation["actions"][0]["block_document_id"] = str(block_id)
        filled = tmp / "regression.yaml"
        filled.write_text(yaml.safe_dump(automation))
        created = prefect_cli(["automation", "create", "--from-file", str(filled)], env)
        assert created.returncode == 0, created.stdout + created.stderr
        yield {"api_url": prefect_server.api_url, "env": env, "tmp": tmp, "received": Webhook.received}
    finally:
        receiver.shutdown()
        receiver.server_close()


def prefect_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PREFECT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


def run_check(store: Path, env: dict[str, str]) -> str:
    """The flow in a process of its own, as a worker runs it; its flow run's id."""
    proc = subprocess.run([sys.executable, "-c", CHECK, str(store)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=FLOW_TIMEOUT_S, stdin=subprocess.DEVNULL)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("FLOW_RUN ")), "")
    assert proc.returncode == 0 and line.endswith(" COMPLETED"), proc.stdout[-2000:] + proc.stderr[-3000:]
    return line.split()[1]


def events_of(api_url: str, flow_run_id: str, name: str) -> list[Any]:
    """Events named ``name`` that the flow run emitted, read back through the Prefect client."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    query = EventFilter(event=EventNameFilter(name=[name]), related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        page = client.read_events(query, limit=EVENTS_PAGE)
    assert page.total <= EVENTS_PAGE
    return page.events


def wait_for(what: str, probe: Any, timeout_s: float = EVENT_WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(1)
    pytest.fail(f"{what} not seen within {timeout_s} s")


def test_a_confirmed_regression_is_an_event_and_a_notification(alerts, add_history_run) -> None:
    store = alerts["tmp"] / "planted.duckdb"
    fill(store, add_history_run, step_from=5)
    with Store(store, read_only=True) as st:
        expected = regression_events(find_regressions(st))
    assert any(e["payload"]["endpoint"] == "checkout" and e["payload"]["metric"] == "p95_ms" for e in expected)

    t0 = time.monotonic()
    flow_run = run_check(store, alerts["env"])
    checked = wait_for("the check's event", lambda: events_of(alerts["api_url"], flow_run, CHECKED_EVENT))
    assert checked[0].payload["open_confirmed"] == len(expected) and checked[0].payload["series"] == 15
    events = events_of(alerts["api_url"], flow_run, REGRESSION_EVENT)
    assert sorted((e.resource.id, json.dumps(e.payload, sort_keys=True)) for e in events) == sorted(
        ("perfagents.target.shop", json.dumps(json.loads(json.dumps(x["payload"])), sort_keys=True)) for x in expected)
    p95 = next(e.payload for e in events if e.payload["endpoint"] == "checkout" and e.payload["metric"] == "p95_ms")
    assert p95["run_id"] == "shop-run5" and 1.2 < p95["size"] < 1.4 and p95["false_alarm_rate"] < 0.01

    received = wait_for("the notifications", lambda: len(alerts["received"]) >= len(events) and alerts["received"])
    print(f"check to {len(received)} notification(s): {time.monotonic() - t0:.1f} s")
    assert len(received) == len(events)
    note = next(n for n in received if n["subject"] == f"perfagents: shop checkout p95_ms regressed x{p95['size']}")
    assert "from run shop-run5" in note["body"] and "still open" in note["body"], note


def test_a_clean_history_emits_the_check_and_no_regression(alerts, add_history_run) -> None:
    store = alerts["tmp"] / "clean.duckdb"
    fill(store, add_history_run, step_from=None)
    notified = len(alerts["received"])
    flow_run = run_check(store, alerts["env"])
    checked = wait_for("the check's event", lambda: events_of(alerts["api_url"], flow_run, CHECKED_EVENT))
    assert checked[0].payload["open_confirmed"] == 0 and checked[0].payload["series"] == 15
    assert events_of(alerts["api_url"], flow_run, REGRESSION_EVENT) == []
    assert len(alerts["received"]) == notified


def test_the_nightly_deployment_runs_the_check_through_a_process_worker(alerts, add_history_run) -> None:
    support = sys.modules["perfagents_prefect_support"]
    env, tmp = alerts["env"], alerts["tmp"]
    store = tmp / "deployed.duckdb"
    fill(store, add_history_run, step_from=5)
    assert prefect_cli(["work-pool", "create", POOL, "--type", "process"], env).returncode == 0
    deploy = prefect_cli(["--no-prompt", "deploy", "--name", "check-regressions/nightly", "--pool", POOL], env)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    worker_log = tmp / "worker.log"
    worker = support.start_process([str(PREFECT), "worker", "start", "--pool", POOL, "--limit", "1"], env, worker_log)
    try:
        t0 = time.monotonic()
        started = prefect_cli(["deployment", "run", "check-regressions/nightly", "--param", f"store={store}"], env)
        match = UUID.search(started.stdout)
        assert started.returncode == 0 and match, started.stdout + started.stderr
        checked = wait_for(f"the deployed check's event (worker log: {worker_log})",
                           lambda: events_of(alerts["api_url"], match.group(1), CHECKED_EVENT), WORKER_RUN_TIMEOUT_S)
        print(f"deployment run to its event: {time.monotonic() - t0:.1f} s")
    finally:
        support.stop_process(worker)
    assert checked[0].payload["open_confirmed"] >= 1
    events = events_of(alerts["api_url"], match.group(1), REGRESSION_EVENT)
    assert len(events) == checked[0].payload["open_confirmed"]
    assert any(e.payload["endpoint"] == "checkout" and e.payload["metric"] == "p95_ms" and e.payload["run_id"] == "shop-run5"
               for e in events)
