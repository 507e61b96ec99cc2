"""Leader election over a ``coordination.k8s.io/v1`` Lease: who acts, decided purely.

Several replicas of a component (the extender, an autoscaler) run so one can fail; only
the holder of the Lease acts. Each replica, every ``renew_s``, reads the Lease and
applies :func:`decide`: renew it while it holds it, take it when it is free or its
holder stopped renewing for ``lease_duration_s`` (as client-go's leaderelection does,
measured on the reader's clock from when it last saw the record change, so clocks need
not agree), else follow. A holder that cannot renew within ``lease_duration_s`` stops
acting before anyone may take over (:func:`still_leading`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class LeaseAction(Enum):
    ACQUIRE = "acquire"
    """Create the Lease, or take it over (a new holder: ``leaseTransitions`` + 1)."""
    RENEW = "renew"
    """We hold it: write a fresh ``renewTime``."""
    FOLLOW = "follow"
    """Someone else holds it and renews it: do not act."""


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says (None fields: not set)."""

    holder: str | None
    renew_time: str | None
    """``spec.renewTime`` as written (compared for change, never as a clock)."""
    duration_s: float
    transitions: int = 0


@dataclass(frozen=True)
class Observed:
    """The record last seen and when it was first seen like that (the reader's clock)."""

    record: LeaseRecord
    since_s: float


@dataclass(frozen=True)
class LeaseDecision:
    action: LeaseAction
    reason: str


def observe(previous: Observed | None, record: LeaseRecord, now_s: float) -> Observed:
    """The observation after reading ``record``: its time moves only when it changed."""
    if previous is not None and previous.record == record:
        return previous
    return Observed(record, now_s)


def decide(observed: Observed | None, me: str, now_s: float) -> LeaseDecision:
    """What ``me`` does with the Lease as observed (None: there is no Lease yet)."""
    if observed is None:
        return LeaseDecision(LeaseAction.ACQUIRE, "no lease yet: creating it")
    record = observed.record
    if record.holder == me:
        return LeaseDecision(LeaseAction.RENEW, "held by me")
    if not record.holder:
        return LeaseDecision(LeaseAction.ACQUIRE, "released by its last holder")
    silent = now_s - observed.since_s
    if silent >= record.duration_s:
        return LeaseDecision(
            LeaseAction.ACQUIRE,
            f"{record.holder} has not renewed for {silent:.1f}s "
            f"(lease duration {record.duration_s:g}s): taking over",
        )
    return LeaseDecision(LeaseAction.FOLLOW, f"held by {record.holder}")


def still_leading(last_renewed_s: float, now_s: float, duration_s: float) -> bool:
    """A holder acts only while its last successful renewal is younger than the lease
    duration: past that another replica may already have taken over."""
    return now_s - last_renewed_s < duration_s


__all__ = [
    "LeaseAction",
    "LeaseDecision",
    "LeaseRecord",
    "Observed",
    "decide",
    "observe",
    "still_leading",
]
