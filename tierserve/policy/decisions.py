"""What placement decides: a :class:`Placement`, or an :class:`Unschedulable` with reasons.

Also the scheduler extender's answers: :class:`FilterResult` and :class:`NodeScore`.
Decisions are frozen values; adapters act on them (bind the pod, record an event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from tierserve.errors import NeverPossible, RetryLater
from tierserve.policy.reasons import (
    NodeCount,
    NodeReason,
    NoPreemption,
    PolicyReason,
    UnitReason,
)


class Retry(StrEnum):
    """Whether an unschedulable pod may fit later (the scheduler framework's status codes)."""

    LATER = "RetryLater"
    """No capacity now, a full unit, or waiting (timeout, terminating pods)."""
    NEVER = "NeverPossible"
    """Cannot succeed as stated: conflicting policies, missing label, too big for any node."""


@dataclass(frozen=True)
class Placement:
    """Put ``pod`` on ``node``; ``unit`` is the policy unit index (None without a policy)."""

    pod: str
    node: str
    unit: int | None = None
    policy: str | None = None
    unit_id: str | None = None
    """The unit's identity (:func:`~tierserve.policy.units.unit_id`), recorded on the pod."""
    pod_labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The unit's ``podLabels`` for the runtime to put on the pod."""
    pod_annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The unit's ``podAnnotations`` for the runtime to put on the pod."""
    reasons: tuple[UnitReason, ...] = ()
    """Why earlier units were passed over, in unit order."""
    preempt_policy: str | None = None
    """The policy's ``preemptPolicy``, recorded (tierserve does not preempt yet)."""


@dataclass(frozen=True)
class Unschedulable:
    """``pod`` cannot be placed now (``retry``), with typed reasons."""

    pod: str
    retry: Retry
    policy: str | None = None
    units: tuple[UnitReason, ...] = ()
    """Per unit tried, in order: why it was passed over or is being waited on."""
    reasons: tuple[PolicyReason, ...] = ()
    """About the pod as a whole (conflict, missing label, never fits, no preemption)."""
    nodes: tuple[NodeCount, ...] = ()
    """For a pod without a policy: the cluster's nodes grouped by why they refused it."""
    retry_after_s: float | None = None
    """When waiting for a ``TimeoutOrExceedMax`` timeout: seconds left; else None (retry
    when the cluster changes)."""

    @property
    def never_possible(self) -> bool:
        return self.retry is Retry.NEVER

    def messages(self) -> list[str]:
        """The reasons in reading order: what blocks the pod first, then each unit, then
        node counts; that tierserve does not preempt comes last."""
        first = [r for r in self.reasons if not isinstance(r, NoPreemption)]
        last = [r for r in self.reasons if isinstance(r, NoPreemption)]
        return (
            [r.message() for r in (*first, *self.units)]
            + [f"{c.nodes} x {c.reason.message()}" for c in self.nodes]
            + [r.message() for r in last]
        )

    def error(self) -> RetryLater | NeverPossible:
        """The matching :mod:`tierserve.errors` exception, for callers that raise."""
        text = f"pod {self.pod} unschedulable: " + "; ".join(self.messages())
        if self.never_possible:
            return NeverPossible(text)
        return RetryLater(text, self.retry_after_s if self.retry_after_s is not None else 1.0)


Decision = Placement | Unschedulable


@dataclass(frozen=True)
class FilterResult:
    """The extender's filter answer for a subset of nodes."""

    allowed: tuple[str, ...]
    """Candidates the pod may go to now, in the order given."""
    rejected: Mapping[str, NodeReason] = field(hash=False)
    """Every other candidate, with why."""
    decision: Decision
    """What :func:`place` would decide over these candidates (its node is the best one)."""


@dataclass(frozen=True)
class NodeScore:
    node: str
    score: int
    """0..10, higher is better (fuller after placing: binpacking)."""


__all__ = ["Decision", "FilterResult", "NodeScore", "Placement", "Retry", "Unschedulable"]
