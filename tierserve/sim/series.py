"""The dashboard's series of a simulation run, per service: what ``simulate --html`` plots.

Pure: everything comes from the :class:`~tierserve.sim.world.SimResult` passed in. One
window per run of timeline points at least ``span / MAX_POINTS`` long (so a day is at
most ``MAX_POINTS`` windows, whatever the timeline's step), each with, for one service:

- ``t_s``/``end_s``: the window; ``desired``, ``allocated``/``ready`` per tier at its end;
- ``arrivals_per_s``: requests that arrived in it (failed ones too) per second;
- ``requests`` and ``met``: the requests that arrived in it (finished + failed) and those
  meeting both objectives (the report's definition: the windows add up to the summary's
  attainment);
- ``ttft_p50_s``, ``ttft_p90_s``, ``tpot_p50_s``, ``tpot_p90_s`` and ``attainment_pct``
  (``100 * met / requests``): over the *latency window* the window falls in, one of
  ``LATENCY_WINDOWS`` equal spans of the run (a percentile over a second of a quiet
  service is noise): nearest-rank percentiles of the finished requests that *arrived* in
  it (None when none did);
- ``cloud_cost_per_h``: the cloud cost billed in it per hour; ``cloud_cost_total`` at
  its end;
- ``usd_per_1m_idc``/``usd_per_1m_cloud``: a tier's cost so far over the output tokens
  of its requests finished so far, per million (IDC GPUs are owned: 0 once it served).

Memory and size are bounded: ``MAX_POINTS`` windows per service, ``MAX_MARKS`` cold-start
marks, ``MAX_DECISIONS`` decisions per run (scale decisions first).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tierserve.sim.report import _boundaries, nearest_rank
from tierserve.sim.world import TIERS, Decision, SimResult, TimelinePoint

MAX_POINTS = 600
"""Windows per service: enough for a chart's width, small enough for a shared file."""
LATENCY_WINDOWS = 120
"""Spans of the run that the latency percentiles and the attainment are taken over."""
MAX_MARKS = 2000
MAX_DECISIONS = 2000
SCALE_KINDS = ("SuccessfulRescale", "BudgetBlocked", "Rebalance", "FailedScheduling")
"""Kept first when a run made more than ``MAX_DECISIONS`` decisions."""
COLUMNS = (
    "t_s",
    "end_s",
    "desired",
    "idc_allocated",
    "idc_ready",
    "cloud_allocated",
    "cloud_ready",
    "arrivals_per_s",
    "ttft_p50_s",
    "ttft_p90_s",
    "tpot_p50_s",
    "tpot_p90_s",
    "requests",
    "met",
    "attainment_pct",
    "cloud_cost_per_h",
    "cloud_cost_total",
    "usd_per_1m_idc",
    "usd_per_1m_cloud",
)
"""The series of one service, each a list with one value per window."""


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _slot(edges: Sequence[float], t: float, n: int) -> int:
    return min(n - 1, max(0, bisect_right(edges, t) - 1))


class _Point:
    """One service's figures at a timeline point (the fleet's when the point has none)."""

    def __init__(self, point: TimelinePoint, name: str | None) -> None:
        mine = point.services.get(name) if name is not None else None
        if mine is None:
            self.desired, self.allocated, self.ready = point.desired, point.allocated, point.ready
            self.arrivals, self.cloud_cost = point.arrivals, point.cloud_cost
        else:
            self.desired, self.allocated, self.ready = mine.desired, mine.allocated, mine.ready
            self.arrivals, self.cloud_cost = mine.arrivals, mine.cloud_cost


def service_names(result: SimResult) -> list[str]:
    """The services to plot: the run's, or one ``all`` for a result built without them."""
    return list(result.services) or ["all"]


@dataclass
class _Tally:
    """One service's requests bucketed by window (``n``) and latency window (``groups``)."""

    n: int
    groups: int
    ttfts: list[list[float]] = field(init=False)
    tpots: list[list[float]] = field(init=False)
    met: list[int] = field(init=False)
    total: list[int] = field(init=False)
    done_tokens: list[list[int]] = field(init=False)
    """Per tier and window: output tokens of the requests that finished in it."""

    def __post_init__(self) -> None:
        self.ttfts = [[] for _ in range(self.groups)]
        self.tpots = [[] for _ in range(self.groups)]
        self.met = [0] * self.n
        self.total = [0] * self.n
        self.done_tokens = [[0] * self.n for _ in TIERS]


def all_series(result: SimResult) -> list[dict[str, list[Any]]]:
    """The series of every service of :func:`service_names`, in that order (module doc):
    one pass over the requests whatever the number of services."""
    names = service_names(result)
    points = result.timeline
    empty: list[dict[str, list[Any]]] = [{c: [] for c in COLUMNS} for _ in names]
    if len(points) < 2:
        return empty
    span = points[-1].t_s - points[0].t_s
    bounds = _boundaries([p.t_s for p in points], span / MAX_POINTS)
    n = len(bounds) - 1
    if n == 0:
        return empty
    edges = [points[b].t_s for b in bounds]
    # Each window's latency window (a group of consecutive windows, by time).
    width = max(span / LATENCY_WINDOWS, 1e-9)
    group = [min(LATENCY_WINDOWS - 1, int((edges[k] - edges[0]) / width)) for k in range(n)]
    tallies = [_Tally(n, group[-1] + 1) for _ in names]
    req = result.requests
    by_service = len(req.service) == len(req) and bool(result.services)
    services: Sequence[int] = req.service if by_service else array("h", bytes(2 * len(req)))
    ttft_slo, tpot_slo = array("f", [result.slo.ttft_s, result.slo.tpot_s])
    rows = zip(
        req.arrival_s,
        req.ttft_s,
        req.tpot_s,
        req.e2e_s,
        req.output_tokens,
        req.tier,
        services,
        strict=True,
    )
    for arrival, ttft, tpot, e2e, tokens_out, tier, index in rows:
        tally = tallies[index]
        k = _slot(edges, arrival, n)
        tally.ttfts[group[k]].append(ttft)
        tally.tpots[group[k]].append(tpot)
        tally.total[k] += 1
        if ttft <= ttft_slo and tpot <= tpot_slo:
            tally.met[k] += 1
        tally.done_tokens[tier][_slot(edges, arrival + e2e, n)] += tokens_out
    by_failed = len(req.failed_service) == len(req.failed_arrival_s) and bool(result.services)
    for j, t in enumerate(req.failed_arrival_s):
        index = req.failed_service[j] if by_failed else 0
        if index >= 0:  # -1: a request for no known service
            tallies[index].total[_slot(edges, t, n)] += 1
    return [
        _columns(result, name if result.services else None, bounds, group, tally)
        for name, tally in zip(names, tallies, strict=True)
    ]


def _columns(
    result: SimResult, name: str | None, bounds: list[int], group: list[int], tally: _Tally
) -> dict[str, list[Any]]:
    points = result.timeline
    at = [_Point(p, name) for p in points]
    groups = tally.groups
    group_met, group_total = [0] * groups, [0] * groups
    for k in range(tally.n):
        group_met[group[k]] += tally.met[k]
        group_total[group[k]] += tally.total[k]
    for values in (*tally.ttfts, *tally.tpots):
        values.sort()
    out: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    tokens_so_far = [0, 0]
    for k in range(tally.n):
        first, last = bounds[k], bounds[k + 1]
        start, end = at[first], at[last]
        dt = points[last].t_s - points[first].t_s
        arrivals = sum(p.arrivals for p in at[first + 1 : last + 1])
        g = group[k]
        ttfts, tpots = tally.ttfts[g], tally.tpots[g]
        for i in range(len(TIERS)):
            tokens_so_far[i] += tally.done_tokens[i][k]
        costs = (0.0, end.cloud_cost)
        row: dict[str, Any] = {
            "t_s": points[first].t_s,
            "end_s": points[last].t_s,
            "desired": end.desired,
            "idc_allocated": end.allocated.get("idc", 0),
            "idc_ready": end.ready.get("idc", 0),
            "cloud_allocated": end.allocated.get("cloud", 0),
            "cloud_ready": end.ready.get("cloud", 0),
            "arrivals_per_s": _round(arrivals / dt) if dt > 0 else None,
            "ttft_p50_s": _round(nearest_rank(ttfts, 50)),
            "ttft_p90_s": _round(nearest_rank(ttfts, 90)),
            "tpot_p50_s": _round(nearest_rank(tpots, 50)),
            "tpot_p90_s": _round(nearest_rank(tpots, 90)),
            "requests": tally.total[k],
            "met": tally.met[k],
            "attainment_pct": (
                round(100.0 * group_met[g] / group_total[g], 3) if group_total[g] else None
            ),
            "cloud_cost_per_h": (
                _round((end.cloud_cost - start.cloud_cost) / dt * 3600) if dt > 0 else None
            ),
            "cloud_cost_total": round(end.cloud_cost, 6),
        }
        for i, tier in enumerate(TIERS):
            tokens = tokens_so_far[i]
            row[f"usd_per_1m_{tier}"] = _round(costs[i] / tokens * 1e6) if tokens else None
        for c in COLUMNS:
            out[c].append(row[c])
    return out


def service_series(result: SimResult, index: int) -> dict[str, list[Any]]:
    """The series of the ``index``-th service of :func:`service_names` alone."""
    return all_series(result)[index]


def cold_starts(result: SimResult, name: str | None) -> list[float]:
    """When the service's cold starts ended (``Provisioned``), the first ``MAX_MARKS``."""
    times = [
        d.t_s
        for d in result.decisions
        if d.kind == "Provisioned" and (name is None or d.service == name)
    ]
    return times[:MAX_MARKS]


def _decision(d: Decision) -> dict[str, Any]:
    return {
        "t_s": d.t_s,
        "kind": d.kind,
        "service": d.service,
        "subject": d.subject,
        "message": d.message,
        "count": d.count,
    }


def decisions(result: SimResult) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The decisions timeline in time order, at most ``MAX_DECISIONS`` (the scale
    decisions first, then the others from the start), and how many of each kind were left
    out."""
    everything = result.decisions
    first = [i for i, d in enumerate(everything) if d.kind in SCALE_KINDS][:MAX_DECISIONS]
    room = MAX_DECISIONS - len(first)
    rest = [i for i, d in enumerate(everything) if d.kind not in SCALE_KINDS][:room]
    kept = sorted(first + rest)  # time order: decisions are recorded in time order
    chosen = [everything[i] for i in kept]
    left_out = Counter(d.kind for d in everything) - Counter(d.kind for d in chosen)
    return [_decision(d) for d in chosen], dict(sorted(left_out.items()))


def run_series(result: SimResult) -> list[dict[str, Any]]:
    """Per service of :func:`service_names`: its ``name``, ``series`` and ``cold_starts``."""
    names = service_names(result)
    return [
        {
            "name": name,
            "series": columns,
            "cold_starts": cold_starts(result, name if result.services else None),
        }
        for name, columns in zip(names, all_series(result), strict=True)
    ]


__all__ = [
    "COLUMNS",
    "LATENCY_WINDOWS",
    "MAX_DECISIONS",
    "MAX_POINTS",
    "all_series",
    "cold_starts",
    "decisions",
    "run_series",
    "service_names",
    "service_series",
]
