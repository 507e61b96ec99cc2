"""The one error hierarchy of tierserve.

::

    TierserveError
    ├── ValidationError        bad input: names the object, field path, value, expectation
    │   └── (carries a list of FieldError)
    ├── NotFoundError          an object or route that does not exist
    ├── ConflictError          the request clashes with current state (already exists, ...)
    ├── RetryLater             no capacity now; the same request may succeed later
    ├── NeverPossible          the request can never succeed as stated (9 GPUs on 8-GPU nodes)
    └── ExternalError          a third-party failure translated at the boundary

Adapters translate third-party exceptions at the boundary with
``raise ExternalError(...) from exc``; callers catch ``TierserveError``.
"""

from __future__ import annotations

from dataclasses import dataclass


class TierserveError(Exception):
    """Base of every error tierserve raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One bad field: where (``spec.units[1].resource``), what was there, what was expected."""

    path: str
    message: str

    def render(self, prefix: str = "") -> str:
        where = f"{prefix}: " if prefix else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class ValidationError(TierserveError):
    """Input that does not validate. ``str()`` lists every bad field, one per line."""

    def __init__(self, subject: str, errors: list[FieldError]) -> None:
        self.subject = subject
        self.errors = list(errors)
        super().__init__("\n".join(e.render(subject) for e in self.errors))


class NotFoundError(TierserveError):
    """The named object does not exist."""


class ConflictError(TierserveError):
    """The request clashes with the current state."""


class RetryLater(TierserveError):
    """Not possible now (no capacity, not ready); retrying later may succeed."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class NeverPossible(TierserveError):
    """Can never succeed as stated; retrying is pointless."""


class ExternalError(TierserveError):
    """A failure of something outside tierserve, translated at the boundary."""
