"""When a Terminating replica's process is stopped: once it has drained, or its grace ran out.

A Terminating replica leaves routing at once; the requests it already has may finish.
Its process is stopped when none is in flight any more, or ``drain_grace_s`` after it
started terminating, whichever comes first (Kubernetes' ``terminationGracePeriodSeconds``
plays the same part for a pod).
"""

from __future__ import annotations

from tierserve.model import Replica


def stop_due(replica: Replica, in_flight: int, now: float, drain_grace_s: float) -> bool:
    """Whether ``replica`` (Terminating) should be stopped now."""
    if not replica.terminating:
        return False
    since = replica.status.terminating_s if replica.status.terminating_s is not None else now
    return in_flight <= 0 or now - since >= drain_grace_s
