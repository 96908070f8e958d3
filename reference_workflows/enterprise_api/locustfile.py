"""Load mix for the enterprise API: integrations polling invoices, reports, a few writes.

Each simulated user is one API client (``client-01`` .. ``client-20`` in turn) sending its
Bearer credentials on every request, as machine clients do. Request names (the endpoint
names in every report): ``invoices_page`` (the first pages), ``invoices_deep`` (pages in the
second half of the table: OFFSET deep into it), ``revenue_report`` (one to three months),
``account`` (accounts seen in earlier invoice pages), ``create_invoice`` and ``export``.
"""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, task

try:
    from reference_workflows.enterprise_api.credentials import bearer_token, client_ids
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from reference_workflows.enterprise_api.credentials import bearer_token, client_ids

PAGE_SIZE = 50
SHALLOW_PAGES = 20
DEEP_FROM = 0.5  # invoices_deep asks for pages in the last half of the listing
REPORT_YEARS = (2021, 2022, 2023)  # the seeded issue dates
MAX_REPORT_MONTHS = 3
KNOWN_ACCOUNTS = 200
FALLBACK_ACCOUNTS = (1, 2, 3, 4, 5)

_next_user = itertools.count()


class ApiClientUser(FastHttpUser):
    wait_time = between(0.05, 0.25)

    def on_start(self) -> None:
        ids = client_ids()
        self.headers = {"Authorization": bearer_token(ids[next(_next_user) % len(ids)])}
        self.last_page = 1
        self.accounts: list[int] = []
        self.fetch_page(1, "invoices_page")

    def fetch_page(self, page: int, name: str) -> None:
        with self.client.get(f"/api/invoices?page={page}&size={PAGE_SIZE}", headers=self.headers,
                             name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            body: dict[str, Any] = resp.json()
            self.last_page = max(1, int(body.get("estimated_total", 0)) // PAGE_SIZE)
            seen = [item["account_id"] for item in body.get("items", [])]
            self.accounts = (self.accounts + seen)[-KNOWN_ACCOUNTS:]

    def pick_account(self) -> int:
        return random.choice(self.accounts or FALLBACK_ACCOUNTS)

    @task(10)
    def invoices_page(self) -> None:
        self.fetch_page(random.randint(1, SHALLOW_PAGES), "invoices_page")

    @task(2)
    def invoices_deep(self) -> None:
        low = max(1, int(self.last_page * DEEP_FROM))
        self.fetch_page(random.randint(low, max(low, self.last_page)), "invoices_deep")

    @task(3)
    def revenue_report(self) -> None:
        year, month = random.choice(REPORT_YEARS), random.randint(1, 12)
        months = random.randint(1, MAX_REPORT_MONTHS)
        end_year, end_month = year + (month - 1 + months) // 12, (month - 1 + months) % 12 + 1
        self.client.get(f"/api/reports/revenue?from={year}-{month:02d}-01&to={end_year}-{end_month:02d}-01",
                        headers=self.headers, name="revenue_report")

    @task(8)
    def account(self) -> None:
        self.client.get(f"/api/accounts/{self.pick_account()}", headers=self.headers, name="account")

    @task(3)
    def create_invoice(self) -> None:
        body = {"account_id": self.pick_account(), "amount": round(random.uniform(20, 5000), 2),
                "currency": random.choice(("USD", "EUR", "GBP")), "memo": "Usage overage - load test"}
        self.client.post("/api/invoices", json=body, headers=self.headers, name="create_invoice")

    @task(1)
    def export(self) -> None:
        self.client.get("/api/export", headers=self.headers, name="export")
