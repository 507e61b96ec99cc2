"""Quantiles and shares of a Prometheus histogram's buckets (cumulative counts by ``le``).

The engines export TTFT and TPOT as histograms (vLLM's names); the dashboard takes the
change of their buckets over a window and reads the p50/p90 and the share of requests
within an SLO from it, interpolating linearly inside a bucket as Prometheus'
``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Buckets = Mapping[float, float]
"""Upper bound (``le``; ``inf`` for +Inf) -> cumulative count."""


def delta(now: Buckets, before: Buckets | None) -> dict[float, float]:
    """What was counted between ``before`` and ``now`` (the same replica). A bucket that
    went down means the engine restarted: everything it has now is new."""
    if before is None:
        return dict(now)
    out = {le: count - before.get(le, 0.0) for le, count in now.items()}
    if any(v < 0 for v in out.values()):
        return dict(now)
    return out


def add(parts: Iterable[Buckets]) -> dict[float, float]:
    """The sum of several histograms' buckets (several replicas, several periods)."""
    total: dict[float, float] = {}
    for part in parts:
        for le, count in part.items():
            total[le] = total.get(le, 0.0) + count
    return total


def quantile(buckets: Buckets, q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation in its bucket; None when empty.
    A quantile in the +Inf bucket is the highest finite bound (as Prometheus answers)."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def share_at_most(buckets: Buckets, limit: float) -> float | None:
    """The share (0..1) of observations at most ``limit``, interpolated inside the bucket
    that holds ``limit``; None when empty."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if limit <= le:
            if math.isinf(le):
                return lower_count / total
            inside = (limit - lower_bound) / (le - lower_bound) if le > lower_bound else 1.0
            return (lower_count + (count - lower_count) * inside) / total
        lower_bound, lower_count = le, count
    return 1.0
