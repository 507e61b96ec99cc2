"""When requests are sent: pure arrival schedules on a time axis starting at 0 (seconds).

Two modes, as the two tools users know:

- **closed loop** (hey): ``-c`` workers each send a request as soon as their previous one
  finishes, optionally no faster than ``-q`` requests per second per worker;
- **open loop** (vLLM's ``benchmark_serving --request-rate``): a Poisson process of
  ``--rate`` requests per second, i.e. exponential inter-arrival times, from a seeded PRNG so
  that the same ``--seed`` gives the same schedule; ``-c`` caps how many are in flight.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import islice

MAX_SCHEDULED = 10_000_000
"""Hard bound on one schedule's length (a 5-minute run at 30,000 requests/s)."""


def poisson_arrivals(rate_per_s: float, seed: int) -> Iterator[float]:
    """Send offsets (seconds from the start) of a Poisson process: the first request at 0,
    then gaps drawn from Exp(``rate_per_s``). Stops after ``MAX_SCHEDULED`` offsets."""
    if rate_per_s <= 0:
        raise ValueError(f"rate {rate_per_s} must be > 0 requests/s")
    rng = random.Random(seed)
    t = 0.0
    for _ in range(MAX_SCHEDULED):
        yield t
        t += rng.expovariate(rate_per_s)


def poisson_schedule(
    rate_per_s: float, seed: int, requests: int | None = None, duration_s: float | None = None
) -> list[float]:
    """The first ``requests`` offsets, or every offset before ``duration_s`` (which wins when
    both are given, as ``-z`` does over ``-n``)."""
    arrivals = poisson_arrivals(rate_per_s, seed)
    if duration_s is not None:
        out = []
        for t in arrivals:
            if t >= duration_s:
                break
            out.append(t)
        return out
    if requests is None:
        raise ValueError("a schedule needs a number of requests or a duration")
    return list(islice(arrivals, requests))


def worker_interval_s(qps_per_worker: float) -> float:
    """Minimum time between two request starts of one closed-loop worker (hey's ``-q``);
    0 when there is no limit."""
    return 1.0 / qps_per_worker if qps_per_worker > 0 else 0.0
