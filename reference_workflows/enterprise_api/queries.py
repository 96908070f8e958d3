"""The API's SQL, one async function per use case, on any ``database.Pool``.

Planted costs (documented in BOTTLENECKS.md):
- ``list_invoices``: ``ORDER BY created_at, id LIMIT ? OFFSET ?`` with no index on
  ``invoices.created_at``: every page sorts the table, and deep pages also step over
  OFFSET rows (an index fixes the sort, only keyset pagination fixes the OFFSET walk).
- ``revenue_report``: a date-range aggregation with no index on ``invoices.issued_on``:
  every report scans the whole table.
- ``export_invoices``: thousands of rows in one response (large payload).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

from reference_workflows.enterprise_api.database import Pool

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
EXPORT_ROWS = 5_000
MAX_EXPORT_ROWS = 20_000
TOP_ACCOUNTS = 25
MAX_AMOUNT = 1_000_000
NEW_INVOICE_STATUSES = ("draft", "open")
CURRENCIES = ("USD", "EUR", "GBP")
INVOICE_TERMS_DAYS = 30
INVOICE_COLUMNS = ("id", "number", "account_id", "created_at", "issued_on", "due_on", "status",
                   "currency", "amount", "memo")
ACCOUNT_COLUMNS = ("id", "name", "email", "plan", "region", "balance", "created_at")

LIST_SQL = (f"SELECT {', '.join(INVOICE_COLUMNS)} FROM invoices "
            "ORDER BY created_at, id LIMIT ? OFFSET ?")
MAX_ID_SQL = "SELECT MAX(id) FROM invoices"
REPORT_SQL = ("SELECT account_id, status, COUNT(*), SUM(amount) FROM invoices "
              "WHERE issued_on >= ? AND issued_on < ? GROUP BY account_id, status")
ACCOUNT_SQL = f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts WHERE id = ?"
EXPORT_SQL = ("SELECT i.id, i.number, i.account_id, a.name, i.issued_on, i.due_on, i.status, "
              "i.currency, i.amount, i.memo FROM invoices i JOIN accounts a ON a.id = i.account_id "
              "ORDER BY i.id DESC LIMIT ?")
BALANCE_SQL = "UPDATE accounts SET balance = balance + ? WHERE id = ? RETURNING balance"
INSERT_INVOICE_SQL = (
    "INSERT INTO invoices (number, account_id, created_at, issued_on, due_on, status, currency, "
    f"amount, memo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {', '.join(INVOICE_COLUMNS)}")
INSERT_AUDIT_SQL = ("INSERT INTO audit_log (ts, client_id, action, entity, entity_id, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?)")
EXPORT_COLUMNS = ("id", "number", "account_id", "account_name", "issued_on", "due_on", "status",
                  "currency", "amount", "memo")


class ApiError(Exception):
    """A request the API refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_day(value: str | None, name: str) -> str:
    if not value:
        raise ApiError(400, f"{name} is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise ApiError(400, f"{name} must be a date YYYY-MM-DD, got {value!r}") from exc


async def list_invoices(pool: Pool, page: int, size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of all invoices, oldest first (OFFSET pagination)."""
    if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError(400, f"page must be >= 1 and size in 1..{MAX_PAGE_SIZE}")
    async with pool.session() as s:
        rows = await s.fetchall(LIST_SQL, (size, (page - 1) * size))
        max_id = (await s.fetchall(MAX_ID_SQL))[0][0] or 0
    return {"page": page, "size": size, "estimated_total": max_id,
            "next_page": page + 1 if len(rows) == size else None,
            "items": [dict(zip(INVOICE_COLUMNS, r, strict=True)) for r in rows]}


async def revenue_report(pool: Pool, date_from: str | None, date_to: str | None) -> dict[str, Any]:
    """Invoiced amounts issued in [from, to): totals by status and the top accounts."""
    start, end = parse_day(date_from, "from"), parse_day(date_to, "to")
    if end <= start:
        raise ApiError(400, "to must be after from")
    async with pool.session() as s:
        rows = await s.fetchall(REPORT_SQL, (start, end))
    by_status: dict[str, dict[str, float]] = {}
    by_account: dict[int, dict[str, float]] = {}
    for account_id, status, count, total in rows:
        entry = by_status.setdefault(status, {"invoices": 0, "amount": 0.0})
        entry["invoices"] += count
        entry["amount"] += total
        if status != "void":
            acc = by_account.setdefault(account_id, {"invoices": 0, "amount": 0.0})
            acc["invoices"] += count
            acc["amount"] += total
    top = sorted(by_account.items(), key=lambda kv: (-kv[1]["amount"], kv[0]))[:TOP_ACCOUNTS]
    return {"from": start, "to": end, "accounts": len(by_account),
            "by_status": {k: {"invoices": v["invoices"], "amount": round(v["amount"], 2)}
                          for k, v in sorted(by_status.items())},
            "top_accounts": [{"account_id": k, "invoices": v["invoices"], "amount": round(v["amount"], 2)}
                             for k, v in top]}


async def fetch_account(pool: Pool, account_id: int) -> dict[str, Any]:
    async with pool.session() as s:
        rows = await s.fetchall(ACCOUNT_SQL, (account_id,))
    if not rows:
        raise ApiError(404, f"account {account_id} not found")
    return dict(zip(ACCOUNT_COLUMNS, rows[0], strict=True))


def check_new_invoice(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object with account_id and amount")
    account_id, amount = body.get("account_id"), body.get("amount")
    if isinstance(account_id, bool) or not isinstance(account_id, int) or account_id < 1:
        raise ApiError(400, "account_id must be a positive integer")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 < amount <= MAX_AMOUNT:
        raise ApiError(400, f"amount must be a number in (0, {MAX_AMOUNT}]")
    status, currency = body.get("status", "open"), body.get("currency", "USD")
    if status not in NEW_INVOICE_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(NEW_INVOICE_STATUSES)}")
    if currency not in CURRENCIES:
        raise ApiError(400, f"currency must be one of {', '.join(CURRENCIES)}")
    memo = body.get("memo", "API invoice")
    if not isinstance(memo, str) or len(memo) > 200:
        raise ApiError(400, "memo must be a string of at most 200 characters")
    return {"account_id": account_id, "amount": round(float(amount), 2), "status": status,
            "currency": currency, "memo": memo}


async def create_invoice(pool: Pool, body: Any, client_id: str) -> dict[str, Any]:
    """Insert an invoice, add it to the account's balance and write an audit row, atomically."""
    new = check_new_invoice(body)
    stamp = now_iso()
    issued = date.fromisoformat(stamp[:10])
    due = date.fromordinal(issued.toordinal() + INVOICE_TERMS_DAYS)
    number = f"INV-{stamp[:4]}-{uuid.uuid4().hex[:12].upper()}"
    async with pool.transaction() as s:
        if not await s.fetchall(BALANCE_SQL, (new["amount"], new["account_id"])):
            raise ApiError(404, f"account {new['account_id']} not found")
        row = (await s.fetchall(INSERT_INVOICE_SQL, (
            number, new["account_id"], stamp, issued.isoformat(), due.isoformat(), new["status"],
            new["currency"], new["amount"], new["memo"])))[0]
        invoice = dict(zip(INVOICE_COLUMNS, row, strict=True))
        await s.execute(INSERT_AUDIT_SQL, (stamp, client_id, "invoice.create", "invoice", invoice["id"],
                                           json.dumps({"number": number, "amount": new["amount"]})))
    return invoice


async def export_invoices(pool: Pool, limit: int = EXPORT_ROWS) -> list[dict[str, Any]]:
    """The latest ``limit`` invoices with their account names (one large JSON array)."""
    if not 1 <= limit <= MAX_EXPORT_ROWS:
        raise ApiError(400, f"limit must be in 1..{MAX_EXPORT_ROWS}")
    async with pool.session() as s:
        rows = await s.fetchall(EXPORT_SQL, (limit,))
    return [dict(zip(EXPORT_COLUMNS, r, strict=True)) for r in rows]
