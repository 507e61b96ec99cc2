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
    slow_start_weight,
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


@pytest.mark.parametrize(
    ("age", "window", "weight"),
    [
        (None, 10.0, 1.0),  # unknown age: warm
        (0.0, 10.0, 0.1),  # at Ready: the 10 % floor
        (0.5, 10.0, 0.1),
        (5.0, 10.0, 0.5),
        (10.0, 10.0, 1.0),  # the window is over
        (3.0, 0.0, 1.0),  # slow start off
    ],
)
def test_slow_start_weight(age: float | None, window: float, weight: float) -> None:
    assert slow_start_weight(age, window) == pytest.approx(weight)


def young(name: str, in_flight: int, age: float, unit: int = 1) -> Candidate:
    return Candidate(name, unit, in_flight, age_s=age)


SLOW_CASES = [
    # (candidates, expected choice, why)
    ([c("idc", 0, 8), young("new", 0, 0.0)], "idc", "at Ready: 1/0.1 = 10 > 9, the warm one"),
    ([c("idc", 0, 9), young("new", 0, 0.0)], "idc", "10 = 10: the tie goes to the earlier unit"),
    ([c("idc", 0, 10), young("new", 0, 0.0)], "new", "11 > 10: the new one"),
    ([c("idc", 0, 8), young("new", 2, 5.0)], "new", "half way: (2+1)/0.5 = 6 < 9"),
    ([c("idc", 0, 8), young("new", 8, 9.9)], "idc", "near the end: (8+1)/0.99 > 9"),
    ([c("idc", 0, 8), young("new", 7, 10.0)], "new", "after the window: plain least"),
    ([young("a", 3, 1.0, 0), young("b", 0, 0.0)], "b", "all young: 40 against 10"),
    ([young("new", 5, 0.0)], "new", "the only replica: chosen, slow start never refuses"),
]


@pytest.mark.parametrize(("cands", "want", "why"), SLOW_CASES, ids=[x[2] for x in SLOW_CASES])
def test_slow_start_ramps_a_new_replica_up(
    cands: list[Candidate], want: str, why: str
) -> None:
    assert LEAST.choose(cands, RoutingState()).choice == want, why


def test_slow_start_off_is_plain_least_outstanding() -> None:
    off = routing_policy("least_outstanding", slow_start_s=0)
    assert off.choose([c("idc", 0, 8), young("new", 0, 0.0)], RoutingState()).choice == "new"
    slow = routing_policy("least_outstanding", slow_start_s=30)
    assert slow == LeastOutstanding(slow_start_s=30.0)
    assert routing_policy("round_robin", slow_start_s=30) == RoundRobin()
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="slow_start_s"):
            routing_policy("least_outstanding", slow_start_s=bad)


def test_a_new_replica_takes_a_share_that_grows_over_the_window() -> None:
    """Nine warm replicas at 8 in flight each and a steady stream of arrivals, one
    finishing per arrival on a warm replica: the new replica fills up over the window,
    not at once."""
    warm = {f"w{i}": 8 for i in range(9)}
    new, got = 0, []
    for step in range(100):  # 10 arrivals a second for 10 s
        age = step / 10
        cands = [c(n, 0, f) for n, f in warm.items()] + [young("new", new, age)]
        choice = LEAST.choose(cands, RoutingState()).choice
        if choice == "new":
            new += 1
        else:
            assert choice is not None
            warm[choice] += 1
        busiest = max(warm, key=lambda n: warm[n])
        warm[busiest] -= 1  # one request finishes
        got.append(new)
    assert got[9] <= 1  # its first second: at most one request (without: eight)
    assert got[49] <= 5
    assert 6 <= got[-1] <= 10
