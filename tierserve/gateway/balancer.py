"""Per-service balancing state around the pure routing policy.

Tracks in-flight requests per replica (this gateway process's own count), when
it first saw each replica Ready (a slow start's age), and each service's policy
state, asks the outlier detector who is ejected, and calls ``policy.choose``. The
choice itself is ``tierserve.policy.routing``'s.
"""

from __future__ import annotations

from collections.abc import Callable

from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.policy.outlier import OutlierDetector
from tierserve.policy.routing import Candidate, RoutingPolicy, RoutingState


class Balancer:
    def __init__(
        self, policy: RoutingPolicy, outliers: OutlierDetector, now: Callable[[], float]
    ) -> None:
        self.policy = policy
        self.outliers = outliers
        self.now = now
        self.in_flight: dict[str, int] = {}
        """Requests in flight per replica name (what ``least_outstanding`` reads)."""
        self._states: dict[str, RoutingState] = {}
        self._ready_since: dict[str, float] = {}
        """When this gateway first saw each replica Ready (forgotten when it is not)."""

    def pick(self, route: ServiceRoute, tried: frozenset[str]) -> Backend | None:
        now = self.now()
        in_flight = self.in_flight
        ejected = self.outliers.ejected
        since = self._ready_since
        if len(since) > 4096:  # replicas long gone: keep this route's only
            keep = {b.replica for b in route.backends}
            self._ready_since = since = {r: t for r, t in since.items() if r in keep}
        candidates = []
        for b in route.backends:
            if b.ready:
                age: float | None = now - since.setdefault(b.replica, now)
            else:
                since.pop(b.replica, None)
                age = None
            candidates.append(
                Candidate(
                    b.replica,
                    b.unit,
                    in_flight.get(b.replica, 0),
                    b.ready,
                    ejected(b.replica, now),
                    age,
                )
            )
        key = route.key
        decision = self.policy.choose(candidates, self._states.get(key, RoutingState()), tried)
        self._states[key] = decision.state
        if decision.choice is None:
            return None
        return route.backend(decision.choice)

    def started(self, replica: str) -> None:
        self.in_flight[replica] = self.in_flight.get(replica, 0) + 1

    def finished(self, replica: str) -> None:
        n = self.in_flight.get(replica, 0) - 1
        if n > 0:
            self.in_flight[replica] = n
        else:
            self.in_flight.pop(replica, None)
