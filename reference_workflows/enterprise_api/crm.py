"""A vendor CRM SDK stand-in whose client is synchronous: the planted blocking call.

``lookup_risk_rating`` blocks its thread for ``BLOCKING_CALL_S`` (the SDK's network round
trip). ``api.get_account`` calls it straight from an ``async def`` handler, so it stalls
the worker's event loop: every other request in that worker waits, and one worker serves
at most ~1/BLOCKING_CALL_S account requests a second however many connections it has.
The fix is code (``await anyio.to_thread.run_sync(lookup_risk_rating, ...)`` or an async
client): a finding to report, not a knob.
"""

from __future__ import annotations

import time

BLOCKING_CALL_S = 0.02
RATINGS = ("A", "B", "C", "D")


def lookup_risk_rating(account_id: int) -> str:
    """The account's credit-risk rating from the CRM (blocking)."""
    time.sleep(BLOCKING_CALL_S)
    return RATINGS[(account_id * 2_654_435_761) % len(RATINGS)]
