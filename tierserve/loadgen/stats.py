"""Pure statistics of a load test: hey's histogram and latency distribution, percentiles,
LLM latency summaries and goodput.

No I/O and no clock: every function takes plain numbers (seconds) and returns values,
so the tables in ``tests/bench/test_stats.py`` pin the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

HEY_PERCENTAGES = (10, 25, 50, 75, 90, 95, 99)
"""The rows of hey's "Latency distribution"."""

HEY_BUCKETS = 10
"""hey's histogram has 10 equal-width buckets between fastest and slowest, plus a last
bucket marked at the slowest latency (11 rows)."""

BAR_WIDTH = 40
"""Width of hey's histogram bars, in characters, for the fullest bucket."""


@dataclass(frozen=True)
class Bucket:
    """One histogram row: latencies ``<= mark_s`` not counted in an earlier row."""

    mark_s: float
    count: int
    frequency: float


@dataclass(frozen=True)
class Percentile:
    """One row of hey's latency distribution: ``percentage`` % of requests took <= ``latency_s``."""

    percentage: int
    latency_s: float


@dataclass(frozen=True)
class Summary:
    """Mean and the percentiles vLLM's benchmark prints (linear interpolation like numpy)."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile with linear interpolation between closest ranks (numpy's
    default), so p50 of [1, 2, 3, 4] is 2.5. ``values`` need not be sorted; empty is NaN."""
    if not values:
        return math.nan
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside [0, 100]")
    return _interpolated(sorted(values), pct)


def _interpolated(ordered: Sequence[float], pct: float) -> float:
    """``percentile`` of values already sorted (not empty, ``pct`` in [0, 100])."""
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> Summary | None:
    """Mean, p50, p90, p99, min and max; ``None`` when there is nothing to summarise."""
    if not values:
        return None
    ordered = sorted(values)  # once for the three percentiles
    return Summary(
        count=len(values),
        mean=math.fsum(values) / len(values),
        p50=_interpolated(ordered, 50),
        p90=_interpolated(ordered, 90),
        p99=_interpolated(ordered, 99),
        min=min(values),
        max=max(values),
    )


def hey_histogram(latencies: Sequence[float], buckets: int = HEY_BUCKETS) -> list[Bucket]:
    """hey's "Response time histogram": marks at ``fastest + i * (slowest - fastest) / buckets``
    for ``i < buckets`` and a last mark at ``slowest``; each latency lands in the first row
    whose mark it does not exceed."""
    if not latencies:
        return []
    ordered = sorted(latencies)
    fastest, slowest = ordered[0], ordered[-1]
    width = (slowest - fastest) / buckets
    marks = [fastest + width * i for i in range(buckets)] + [slowest]
    counts = [0] * len(marks)
    row = 0
    for latency in ordered:  # sorted, so the row index only moves forward
        while latency > marks[row] and row < len(marks) - 1:
            row += 1
        counts[row] += 1
    total = len(ordered)
    return [Bucket(mark, count, count / total) for mark, count in zip(marks, counts, strict=True)]


def hey_bar(count: int, max_count: int, width: int = BAR_WIDTH) -> int:
    """Bar length in characters, rounded like hey: ``(count * 40 + max / 2) / max``."""
    if max_count <= 0:
        return 0
    return (count * width + max_count // 2) // max_count


def hey_latency_distribution(
    latencies: Sequence[float], percentages: Sequence[int] = HEY_PERCENTAGES
) -> list[Percentile]:
    """hey's "Latency distribution": for each percentage p, the first sorted latency whose
    index ``i`` has ``i * 100 // n >= p`` (no interpolation; what hey prints)."""
    ordered = sorted(latencies)
    out: list[Percentile] = []
    j = 0
    for i, latency in enumerate(ordered):
        if j >= len(percentages):
            break
        while j < len(percentages) and i * 100 // len(ordered) >= percentages[j]:
            out.append(Percentile(percentages[j], latency))
            j += 1
    return out


def tpot_s(e2e_s: float, ttft_s: float, output_tokens: int) -> float | None:
    """Time per output token after the first, as vLLM's benchmark defines it:
    ``(e2e - ttft) / (output_tokens - 1)``; ``None`` for fewer than 2 tokens."""
    if output_tokens < 2:
        return None
    return (e2e_s - ttft_s) / (output_tokens - 1)


@dataclass(frozen=True)
class Slo:
    """Service-level objectives for goodput, in seconds; ``None`` means not checked.

    ``ttft_s``: time to first token; ``tpot_s``: time per output token; ``e2e_s``: end-to-end
    latency (vLLM's ``e2el``).
    """

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    @property
    def empty(self) -> bool:
        return self.ttft_s is None and self.tpot_s is None and self.e2e_s is None

    @property
    def needs_streaming(self) -> bool:
        """TTFT and TPOT can only be measured on a streamed response."""
        return self.ttft_s is not None or self.tpot_s is not None

    def as_dict(self) -> dict[str, float]:
        pairs = {"ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "e2e_s": self.e2e_s}
        return {k: v for k, v in pairs.items() if v is not None}


def meets_slo(slo: Slo, ttft: float | None, tpot: float | None, e2e: float) -> bool:
    """Whether one successful request meets every objective of ``slo``. A request with one
    output token has no TPOT and passes that objective (vLLM counts its TPOT as 0)."""
    if slo.ttft_s is not None and (ttft is None or ttft > slo.ttft_s):
        return False
    if slo.tpot_s is not None and tpot is not None and tpot > slo.tpot_s:
        return False
    return not (slo.e2e_s is not None and e2e > slo.e2e_s)


@dataclass(frozen=True)
class Goodput:
    """Requests that met the SLO, and those per second of the run (vLLM's request goodput)."""

    good: int
    total: int
    requests_per_s: float

    @property
    def attainment_pct(self) -> float:
        return 100.0 * self.good / self.total if self.total else 0.0


def goodput(good: int, total: int, duration_s: float) -> Goodput:
    """``good / duration_s`` requests per second; 0 for a run of no duration."""
    return Goodput(good, total, good / duration_s if duration_s > 0 else 0.0)
