"""Per-service balancing state around the pure routing policy.

Tracks in-flight requests per replica (this gateway process's own count) and
each service's policy state, asks the outlier detector who is ejected, and calls
``policy.choose``. The choice itself is ``tierserve.policy.routing``'s.
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

    def pick(self, route: ServiceRoute, tried: frozenset[str]) -> Backend | None:
        now = self.now()
        in_flight = self.in_flight
        ejected = self.outliers.ejected
        candidates = [
            Candidate(
                b.replica,
                b.unit,
                in_flight.get(b.replica, 0),
                b.ready,
                ejected(b.replica, now),
            )
            for b in route.backends
        ]
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
