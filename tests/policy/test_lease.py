"""Leader election decided purely: acquire a missing or silent Lease, renew our own,
follow a live holder, stop acting once renewals lapse."""

from __future__ import annotations

from tierserve.policy.lease import (
    LeaseAction,
    LeaseRecord,
    decide,
    observe,
    still_leading,
)

A = LeaseRecord("a", "2026-12-02T04:00:00.000000Z", 15.0, 1)


def test_no_lease_is_created_and_our_own_is_renewed() -> None:
    assert decide(None, "b", 0.0).action is LeaseAction.ACQUIRE
    assert decide(observe(None, A, 0.0), "a", 100.0).action is LeaseAction.RENEW


def test_a_live_holder_is_followed_and_a_silent_one_taken_over() -> None:
    seen = observe(None, A, 10.0)
    assert decide(seen, "b", 24.9).action is LeaseAction.FOLLOW
    # a renewal (a new renewTime) restarts the clock, measured on the reader's side
    renewed = LeaseRecord("a", "2026-12-02T04:00:05.000000Z", 15.0, 1)
    seen = observe(seen, renewed, 20.0)
    assert seen.since_s == 20.0 and observe(seen, renewed, 30.0).since_s == 20.0
    assert decide(seen, "b", 34.9).action is LeaseAction.FOLLOW
    took = decide(seen, "b", 35.0)
    assert took.action is LeaseAction.ACQUIRE
    assert took.reason == "a has not renewed for 15.0s (lease duration 15s): taking over"


def test_a_released_lease_is_taken_at_once() -> None:
    free = LeaseRecord(None, None, 15.0, 3)
    assert decide(observe(None, free, 0.0), "b", 0.0).action is LeaseAction.ACQUIRE


def test_a_holder_stops_acting_before_anyone_may_take_over() -> None:
    assert still_leading(last_renewed_s=100.0, now_s=114.9, duration_s=15.0)
    assert not still_leading(last_renewed_s=100.0, now_s=115.0, duration_s=15.0)
