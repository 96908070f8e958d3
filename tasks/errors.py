"""Every error perfagents raises on purpose.

    PerfagentsError                 an expected failure: the CLI prints one line, exit code 2
    ├── InputError                  the user's input is wrong; retrying cannot help
    │   ├── SpecError               target spec: bad key, missing file, unknown knob type ...
    │   ├── ExpressionError         a goal / quality expression that does not parse
    │   ├── BudgetError             a malformed budget
    │   └── UnsafeTargetError       load would leave loopback without --allow-remote
    │   └── CapacityError           too few or invalid points for a capacity (USL) fit
    ├── RefusedError                the spec forbids it (DDL without allow_ddl ...)
    └── TransientError              a retry may fix it (Prefect's retry_condition_fn)
        ├── TargetNotReadyError     the target did not answer its ready probe in time
        ├── TargetUnreachableError  base_url did not answer at all
        ├── PortBusyError           the chosen port was taken before the target bound it
        ├── StoreLockedError        another process held the DuckDB store past the wait's bound
        ├── LoadTestError           the Locust subprocess failed or overran its bound
        └── LlmError                the model server failed the call (after the SDK's retries)
"""

from __future__ import annotations


class PerfagentsError(Exception):
    """An expected failure, reported as one line."""


class InputError(PerfagentsError):
    """The user's input is wrong."""


class SpecError(InputError):
    """The target spec is invalid."""


class ExpressionError(InputError):
    """A goal or quality expression does not parse."""


class BudgetError(InputError):
    """The budget constraints are malformed."""


class UnsafeTargetError(InputError):
    """Load would go to a host other than loopback without --allow-remote."""


class CapacityError(InputError):
    """The throughput measurements cannot be fitted (too few points, non-positive, NaN)."""


class StoreError(InputError):
    """The store path is not a perfagents store (another file, another DuckDB database, a newer schema)."""


class RefusedError(PerfagentsError):
    """The spec does not allow this change."""


class TransientError(PerfagentsError):
    """A retry may fix this."""


class TargetNotReadyError(TransientError):
    """The target did not become ready in time."""


class TargetUnreachableError(TransientError):
    """The target's base_url does not answer."""


class PortBusyError(TransientError):
    """The port picked for the target was taken."""


class StoreLockedError(TransientError):
    """Another process holds the DuckDB store."""


class LoadTestError(TransientError):
    """The load generator failed or overran its time bound."""


class LlmError(TransientError):
    """The model server did not answer (timeout, connection, 429/5xx after retries) or refused the call."""


def is_transient(exc: BaseException) -> bool:
    """Prefect retry_condition_fn helper: retry only what a retry can fix."""
    return isinstance(exc, TransientError)
