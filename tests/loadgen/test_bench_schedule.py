"""Poisson arrivals: deterministic per seed, the right mean, bounded by -n or -z."""

from __future__ import annotations

import pytest

from tierserve.loadgen.schedule import poisson_schedule, worker_interval_s


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    a = poisson_schedule(10.0, seed=7, requests=50)
    assert a == poisson_schedule(10.0, seed=7, requests=50)
    assert a != poisson_schedule(10.0, seed=8, requests=50)
    assert a[0] == 0.0  # the first request goes at once, as in vLLM's benchmark
    assert a == sorted(a)


def test_mean_gap_is_one_over_rate() -> None:
    offsets = poisson_schedule(100.0, seed=1, requests=20_001)
    # 20,000 exponential gaps of mean 10 ms: the sample mean is within a few percent
    assert offsets[-1] / 20_000 == pytest.approx(0.01, rel=0.03)


def test_duration_bounds_the_schedule_and_wins_over_requests() -> None:
    offsets = poisson_schedule(50.0, seed=3, requests=5, duration_s=2.0)
    assert len(offsets) > 5
    assert all(t < 2.0 for t in offsets)
    assert offsets == poisson_schedule(50.0, seed=3, requests=10_000)[: len(offsets)]


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        poisson_schedule(0.0, seed=1, requests=1)
    with pytest.raises(ValueError, match="requests or a duration"):
        poisson_schedule(1.0, seed=1)


@pytest.mark.parametrize(("qps", "interval"), [(0.0, 0.0), (4.0, 0.25), (0.5, 2.0)])
def test_worker_interval(qps: float, interval: float) -> None:
    assert worker_interval_s(qps) == interval
