"""The pure routing choice: least outstanding, round robin, ties, ejection, retries."""

from __future__ import annotations

import pytest

from tierserve.errors import ValidationError
from tierserve.policy.routing import (
    ROUTING_POLICIES,
    Candidate,
    Chosen,
    LeastOutstanding,
    NoCandidate,
    RoundRobin,
    RoutingState,
    routing_policy,
)


def c(
    name: str, unit: int = 0, in_flight: int = 0, *, ready: bool = True, ejected: bool = False
) -> Candidate:
    return Candidate(name, unit, in_flight, ready, ejected)


LEAST = LeastOutstanding()

CASES = [
    # (candidates, tried, expected choice, why)
    ([c("idc", 0, 2), c("cloud", 1, 1)], set(), "cloud", "fewest in flight wins across units"),
    ([c("cloud", 1, 1), c("idc", 0, 1)], set(), "idc", "tie: the earlier unit (IDC)"),
    ([c("b", 0, 1), c("a", 0, 1)], set(), "a", "tie in one unit: the name"),
    ([c("idc", 0, 0, ready=False), c("cloud", 1, 5)], set(), "cloud", "only Ready replicas"),
    ([c("idc", 0, 0, ejected=True), c("cloud", 1, 5)], set(), "cloud", "ejected skipped"),
    ([c("idc", 0, 0), c("cloud", 1, 5)], {"idc"}, "cloud", "a retry goes elsewhere"),
    ([c("idc", 0, 0, ready=False)], set(), None, "nothing Ready"),
    ([c("idc", 0, 0)], {"idc"}, None, "everything tried"),
    ([], set(), None, "no replicas (scaled to zero)"),
]


@pytest.mark.parametrize(("cands", "tried", "want", "why"), CASES, ids=[x[3] for x in CASES])
def test_least_outstanding(
    cands: list[Candidate], tried: set[str], want: str | None, why: str
) -> None:
    decision = LEAST.choose(cands, RoutingState(), frozenset(tried))
    assert decision.choice == want, why
    assert decision.state == RoutingState()


def test_all_ejected_panics_to_the_least_loaded() -> None:
    d = LEAST.choose([c("a", 0, 3, ejected=True), c("b", 1, 1, ejected=True)], RoutingState())
    assert d.choice == "b" and d.reason == Chosen(in_flight=1, panic=True)


def test_no_candidate_reason_counts() -> None:
    d = LEAST.choose([c("a"), c("b", ready=False)], RoutingState(), frozenset({"a"}))
    assert d.reason == NoCandidate(total=2, ready=1, tried=1)


def test_round_robin_cycles_in_unit_then_name_order_and_carries_state() -> None:
    rr = RoundRobin()
    cands = [c("z-cloud", 1), c("b-idc", 0), c("a-idc", 0), c("off", 0, ready=False)]
    state, got = RoutingState(), []
    for _ in range(4):
        d = rr.choose(cands, state)
        got.append(d.choice)
        state = d.state
    assert got == ["a-idc", "b-idc", "z-cloud", "a-idc"]
    assert state == RoutingState(cursor=4)
    assert rr.choose(cands, state, frozenset({"a-idc", "b-idc", "z-cloud"})).choice is None


def test_registry_and_factory() -> None:
    assert set(ROUTING_POLICIES) == {"least_outstanding", "round_robin"}
    assert all(p.name == key for key, p in ROUTING_POLICIES.items())
    assert routing_policy("round_robin").name == "round_robin"
    with pytest.raises(ValidationError, match="least_outstanding, round_robin"):
        routing_policy("random")


def test_outstanding_index_chooses_as_least_outstanding_does() -> None:
    import random

    from tierserve.policy.routing import LeastOutstanding, OutstandingIndex

    rng = random.Random(5)
    index = OutstandingIndex()
    counts: dict[str, tuple[int, int]] = {}
    policy = LeastOutstanding()
    for step in range(5000):
        name = f"r{rng.randrange(12)}"
        if rng.random() < 0.05 and name in counts:
            del counts[name]
            index.remove(name)
        else:
            unit = int(name[1:]) % 2
            flight = max(0, counts.get(name, (0, unit))[0] + rng.choice((-1, 1, 1)))
            counts[name] = (flight, unit)
            index.set(name, unit, flight)
        candidates = [Candidate(n, u, f) for n, (f, u) in counts.items()]
        expected = policy.choose(candidates, RoutingState()).choice if candidates else None
        assert index.choose() == expected, step
