"""Budget constraints: hard limits on what a run may spend, and the ledger of what it spent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import BudgetError
from tasks.result import Costs

# name in the user's vocabulary -> field of Budget
BUDGET_KEYS = {
    "minutes": "minutes",
    "iterations": "iterations",
    "load_s": "load_s",
    "load_seconds": "load_s",
    "tokens": "tokens",
    "usd": "usd",
    "cpu_s": "cpu_s",
}


class Budget(BaseModel):
    """Hard limits; ``None`` means unlimited."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # minutes=inf is no limit anyone means

    minutes: float | None = Field(default=None, gt=0)
    iterations: int | None = Field(default=None, ge=0)
    load_s: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)
    cpu_s: float | None = Field(default=None, gt=0)


def parse_budget(value: str | dict | Budget | None) -> Budget:
    """``minutes=15,iterations=8`` or a mapping -> Budget; raises BudgetError naming the bad item."""
    if value is None:
        return Budget()
    if isinstance(value, Budget):
        return value
    items: dict[str, Any] = {}
    if isinstance(value, str):
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            key, sep, raw = part.partition("=")
            if not sep or not raw.strip():
                raise BudgetError(f"bad budget item {part!r}: expected key=value, e.g. minutes=15")
            items[key.strip()] = raw.strip()
    elif isinstance(value, dict):
        items = dict(value)
    else:
        raise BudgetError(f"bad budget {value!r}: expected 'key=value,...' or a mapping")
    unknown = [k for k in items if k not in BUDGET_KEYS]
    if unknown:
        raise BudgetError(f"unknown budget key {unknown[0]!r} (known: {', '.join(sorted(BUDGET_KEYS))})")
    try:
        return Budget(**{BUDGET_KEYS[k]: v for k, v in items.items()})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise BudgetError(f"bad budget {err['loc'][0]}={err.get('input')!r}: {err['msg']}") from exc


# A run given no `minutes` still ends: after this long it stops as if that were its budget
# (every load window is bounded too; this bounds how many of them a run without one may take).
DEFAULT_MAX_MINUTES = 240.0


@dataclass
class Ledger:
    """What a run has spent so far, checked against its Budget before each step."""

    budget: Budget
    started: float = field(default_factory=time.monotonic)
    iterations: int = 0
    load_s: float = 0.0
    cpu_s: float = 0.0
    tokens: int = 0
    usd: float = 0.0

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self.started

    def exhausted_by(self, next_load_s: float = 0.0, next_iteration: bool = True, reserve: int = 0) -> str | None:
        """The budget the next step would exceed, or None if it fits.

        ``reserve``: iterations that must still fit after the next one (include their load in
        ``next_load_s``).
        """
        b = self.budget
        if b.iterations is not None and next_iteration and self.iterations + 1 + reserve > b.iterations:
            return "iterations"
        minutes = b.minutes if b.minutes is not None else DEFAULT_MAX_MINUTES
        if self.wall_s + next_load_s > minutes * 60:
            return "minutes"
        if b.load_s is not None and self.load_s + next_load_s > b.load_s:
            return "load_s"
        if b.cpu_s is not None and self.cpu_s > b.cpu_s:
            return "cpu_s"
        if b.tokens is not None and self.tokens > b.tokens:
            return "tokens"
        if b.usd is not None and self.usd > b.usd:
            return "usd"
        return None

    def as_costs(self) -> Costs:
        return {
            "wall_s": round(self.wall_s, 3),
            "load_s": round(self.load_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "tokens": self.tokens,
            "usd": round(self.usd, 6),
        }
