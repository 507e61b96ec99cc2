"""Which replica gets the next request: a pure routing choice, pluggable by name.

The gateway calls ``choose`` once per attempt with the service's candidate
replicas (each with its in-flight count, unit index and ejection state), the
replicas this request already tried, and the policy's own state; it gets back
the choice, the new state and a reason. No I/O, no clock: the gateway reads
in-flight counts and the outlier detector's ejections at the edge.

Rules every policy keeps:

- Only Ready replicas receive traffic (Terminating ones finish what they have).
- Replicas the request already tried are skipped (a retry goes elsewhere).
- Ejected replicas (outlier detection) are skipped while any healthy one is
  left; if every remaining Ready replica is ejected the policy still picks one
  (Envoy's panic mode): a guess beats refusing every request.
- Ties go to the earlier unit (IDC before cloud), then to the name.

Slow start (``least_outstanding``, as Envoy's ``slow_start_config`` and NGINX's
``slow_start``): a replica Ready for less than ``slow_start_s`` weighs
``max(10 %, age / slow_start_s)``, and the policy picks the fewest
``(in flight + 1) / weight``. Without it a replica that has just become Ready, with
nothing in flight against its peers' several, takes every new request until it has as
many: on the simulated day's ~1000-token prompts, ~8 prefills within a second on one
engine, the last answering its first token after 2 s (every late request of the
planner at headroom 1.5 and 2.0 was one of those). A replica whose age is unknown counts
as warm.

Policies: ``least_outstanding`` (default) and ``round_robin``; ``ROUTING_POLICIES``
is the registry and ``routing_policy(name)`` the validating factory.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tierserve.errors import FieldError, ValidationError


@dataclass(frozen=True, slots=True)
class Candidate:
    """One replica of the service as the gateway sees it right now."""

    name: str
    unit: int
    """ResourcePolicy unit index: 0 is the first (IDC) unit; later units are cloud."""
    in_flight: int = 0
    """Requests this gateway has sent to the replica that have not finished."""
    ready: bool = True
    ejected: bool = False
    """Ejected by outlier detection (recent replica fault (see policy/retry.py))."""
    age_s: float | None = None
    """Seconds since the replica became Ready (as the caller saw it); None: warm."""


@dataclass(frozen=True, slots=True)
class RoutingState:
    """A policy's explicit state; ``cursor`` is round robin's position."""

    cursor: int = 0


@dataclass(frozen=True, slots=True)
class NoCandidate:
    """Why nothing was chosen: counts of what there was."""

    total: int
    ready: int
    tried: int


@dataclass(frozen=True, slots=True)
class Chosen:
    """Why this replica: its in-flight count and whether it was picked in panic mode."""

    in_flight: int
    panic: bool = False


Reason = Chosen | NoCandidate


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    choice: str | None
    """The chosen replica's name, or None when no Ready untried replica is left."""
    state: RoutingState
    reason: Reason = field(default_factory=lambda: NoCandidate(0, 0, 0))


class RoutingPolicy(Protocol):
    @property
    def name(self) -> str:
        """The policy's registry name (``--policy``)."""
        ...

    def choose(
        self,
        candidates: Sequence[Candidate],
        state: RoutingState,
        tried: frozenset[str] = frozenset(),
    ) -> RoutingDecision:
        """Pick one candidate (see the module docstring for the rules)."""
        ...


def _eligible(
    candidates: Sequence[Candidate], tried: frozenset[str]
) -> tuple[list[Candidate], bool]:
    """Ready, untried candidates; healthy ones unless all are ejected (then panic)."""
    ready = [c for c in candidates if c.ready and c.name not in tried]
    healthy = [c for c in ready if not c.ejected]
    if healthy:
        return healthy, False
    return ready, bool(ready)


def _none(
    candidates: Sequence[Candidate], tried: frozenset[str], state: RoutingState
) -> RoutingDecision:
    ready = sum(1 for c in candidates if c.ready)
    return RoutingDecision(None, state, NoCandidate(len(candidates), ready, len(tried)))


SLOW_START_S = 10.0
"""How long a newly Ready replica's share of new requests ramps up (seconds; 0: off)."""
SLOW_START_MIN_WEIGHT = 0.1


def slow_start_weight(age_s: float | None, window_s: float) -> float:
    """A replica's weight ``age_s`` seconds after Ready: ``age / window``, at least 10 %,
    1 once the window is over (and for a replica of unknown age, or no window)."""
    if age_s is None or window_s <= 0 or age_s >= window_s:
        return 1.0
    return max(SLOW_START_MIN_WEIGHT, age_s / window_s)


@dataclass(frozen=True, slots=True)
class LeastOutstanding:
    """Fewest in-flight requests, a young replica's weighted (slow start); ties to the
    earlier unit, then the name."""

    name: str = "least_outstanding"
    slow_start_s: float = SLOW_START_S

    def choose(
        self,
        candidates: Sequence[Candidate],
        state: RoutingState,
        tried: frozenset[str] = frozenset(),
    ) -> RoutingDecision:
        pool, panic = _eligible(candidates, tried)
        if not pool:
            return _none(candidates, tried, state)
        window = self.slow_start_s
        best = min(
            pool,
            key=lambda c: (
                (c.in_flight + 1) / slow_start_weight(c.age_s, window),
                c.unit,
                c.name,
            ),
        )
        return RoutingDecision(best.name, state, Chosen(best.in_flight, panic))


@dataclass(frozen=True, slots=True)
class RoundRobin:
    """Each eligible replica in turn, in (unit, name) order."""

    name: str = "round_robin"

    def choose(
        self,
        candidates: Sequence[Candidate],
        state: RoutingState,
        tried: frozenset[str] = frozenset(),
    ) -> RoutingDecision:
        pool, panic = _eligible(candidates, tried)
        if not pool:
            return _none(candidates, tried, state)
        pool.sort(key=lambda c: (c.unit, c.name))
        pick = pool[state.cursor % len(pool)]
        return RoutingDecision(
            pick.name, RoutingState(cursor=state.cursor + 1), Chosen(pick.in_flight, panic)
        )


class OutstandingIndex:
    """``least_outstanding`` kept incrementally: the same choice as
    :meth:`LeastOutstanding.choose` over the replicas in the index (all Ready, none
    ejected, none in slow start: the caller keeps those beside it and lets ``choose``
    compare them with the index's best), in O(log n) per change instead of O(n) per
    request — for a caller that routes millions of requests over hundreds of replicas
    (the simulator).

    A heap of ``(in_flight, unit, name)`` with lazy deletion: a change pushes the new
    entry; entries that no longer match a replica's current count are dropped when they
    reach the top, and the heap is rebuilt when stale entries outnumber live ones 4:1.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self._current: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._current)

    def set(self, name: str, unit: int, in_flight: int) -> None:
        """Add the replica, or record its new in-flight count."""
        self._current[name] = (in_flight, unit)
        heapq.heappush(self._heap, (in_flight, unit, name))
        if len(self._heap) > 4 * len(self._current) + 64:
            self._heap = [(f, u, n) for n, (f, u) in self._current.items()]
            heapq.heapify(self._heap)

    def remove(self, name: str) -> None:
        self._current.pop(name, None)

    def choose(self) -> str | None:
        """The replica with the fewest in flight (ties: earlier unit, then name)."""
        heap, current = self._heap, self._current
        while heap:
            in_flight, unit, name = heap[0]
            if current.get(name) == (in_flight, unit):
                return name
            heapq.heappop(heap)
        return None


ROUTING_POLICIES: dict[str, RoutingPolicy] = {
    "least_outstanding": LeastOutstanding(),
    "round_robin": RoundRobin(),
}
DEFAULT_ROUTING_POLICY = "least_outstanding"


def routing_policy(name: str, slow_start_s: float | None = None) -> RoutingPolicy:
    """The registered policy called ``name`` (with its slow start window, where it has
    one, set to ``slow_start_s`` if given); a ValidationError names the choices."""
    try:
        policy = ROUTING_POLICIES[name]
    except KeyError:
        choices = ", ".join(sorted(ROUTING_POLICIES))
        message = f"{name!r} is not a routing policy (one of: {choices})"
        raise ValidationError("gateway", [FieldError("policy", message)]) from None
    if slow_start_s is not None:
        if not slow_start_s >= 0 or slow_start_s == float("inf"):
            message = f"{slow_start_s!r}: expected a finite number of seconds >= 0"
            raise ValidationError("gateway", [FieldError("slow_start_s", message)])
        if isinstance(policy, LeastOutstanding):
            policy = LeastOutstanding(slow_start_s=slow_start_s)
    return policy


__all__ = [
    "DEFAULT_ROUTING_POLICY",
    "ROUTING_POLICIES",
    "SLOW_START_MIN_WEIGHT",
    "SLOW_START_S",
    "Candidate",
    "Chosen",
    "LeastOutstanding",
    "NoCandidate",
    "OutstandingIndex",
    "Reason",
    "RoundRobin",
    "RoutingDecision",
    "RoutingPolicy",
    "RoutingState",
    "routing_policy",
    "slow_start_weight",
]
