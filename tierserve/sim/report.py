"""What a simulation run amounts to: a JSON-able summary, windows over the timeline, and
the rich tables ``tierserve simulate`` prints. Pure: everything comes from the
:class:`~tierserve.sim.world.SimResult` passed in; rendering writes only to the console
passed in.

Definitions:

- a request *meets* the TTFT objective when ``ttft_s <= slo.ttft_s``, the TPOT one when
  ``tpot_s <= slo.tpot_s`` (at the float32 precision the latencies are stored in); a
  failed request (held past the hold timeout, cut by a stop) misses every objective, so
  attainment is over finished + failed requests;
- goodput is the requests meeting both objectives per second of ``duration_s`` (the
  workload's length, not the drain after it), and their output tokens per second;
- percentiles are nearest-rank (the value at rank ``ceil(p/100 * n)``) over finished
  requests, so every reported figure is a latency some request saw;
- cost: IDC GPUs are owned (cost 0, GPU-seconds still counted); cloud GPUs are paid per
  second at the node's price. ``$/1M tokens`` divides a tier's cost by the output tokens
  that tier served; the overall one divides the cloud cost by every output token.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tierserve.sim.world import TIERS, Decision, SimResult

PERCENTILES = (50, 90, 99)
SHOWN_KINDS = ("SuccessfulRescale", "Scheduled")
"""The decisions ``render_summary`` lists one by one; the others are counted."""
RECENT_DECISIONS = 15
PAID = {"idc": "owned", "cloud": "per second"}


# -- arithmetic ---------------------------------------------------------------------------------


def nearest_rank(ordered: Sequence[float], pct: int) -> float | None:
    """The ``pct``-th percentile of ascending ``ordered`` by nearest rank; None when empty."""
    n = len(ordered)
    if n == 0:
        return None
    rank = -(-pct * n // 100)  # ceil(pct * n / 100) in integers: no float rounding at n = 4 M
    return float(ordered[max(0, rank - 1)])


def _percentiles(ordered: Sequence[float]) -> dict[str, float | None]:
    return {f"p{p}": _round(nearest_rank(ordered, p)) for p in PERCENTILES}


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None


def _per_million(amount: float, tokens: int) -> float | None:
    return amount / tokens * 1e6 if tokens else None


# -- the summary ----------------------------------------------------------------------------------


def summarize(result: SimResult) -> dict[str, Any]:
    """The run's figures as plain JSON values: seconds in ``_s``, percentages in ``_pct``,
    money in the nodes' price unit; None where a figure has no data (no requests, no tokens,
    no wall time). Sorts each latency array once (4 M requests: a few seconds)."""
    req = result.requests
    slo = result.slo
    finished = len(req)
    failed = len(req.failed_arrival_s)
    total = finished + failed
    ttft_sorted = sorted(req.ttft_s)
    tpot_sorted = sorted(req.tpot_s)
    e2e_sorted = sorted(req.e2e_s)
    # Latencies are stored as float32: compare with the objectives at that precision, so a
    # TPOT of exactly 0.1 s meets a 0.1 s SLO (float32(0.1) > 0.1).
    ttft_slo, tpot_slo = array("f", [slo.ttft_s, slo.tpot_s])
    # Single objectives from the sorted copies; both needs the pairs: one pass.
    ttft_met = bisect_right(ttft_sorted, ttft_slo)
    tpot_met = bisect_right(tpot_sorted, tpot_slo)
    both_met = good_tokens = 0
    tokens = [0, 0]
    served = [0, 0]
    for ttft, tpot, out, where in zip(
        req.ttft_s, req.tpot_s, req.output_tokens, req.tier, strict=True
    ):
        tokens[where] += out
        served[where] += 1
        if ttft <= ttft_slo and tpot <= tpot_slo:
            both_met += 1
            good_tokens += out
    duration = result.duration_s
    tiers: dict[str, dict[str, Any]] = {}
    for i, tier in enumerate(TIERS):
        gpu_s = result.gpu_seconds.get(tier, 0.0)
        cost = result.cloud_cost if tier == "cloud" else 0.0
        tiers[tier] = {
            "paid": PAID[tier],
            "gpu_seconds": round(gpu_s, 3),
            "gpu_hours": round(gpu_s / 3600, 6),
            "cost": round(cost, 6),
            "requests": served[i],
            "output_tokens": tokens[i],
            "usd_per_1m_tokens": _round(_per_million(cost, tokens[i])),
            "gpu_seconds_per_1m_tokens": _round(_per_million(gpu_s, tokens[i]), 3),
            "peak_replicas": result.peak_replicas.get(tier, 0),
        }
    all_tokens = sum(tokens)
    by_kind: Counter[str] = Counter()
    for d in result.decisions:
        by_kind[d.kind] += d.count
    shown = [d for d in result.decisions if d.kind in SHOWN_KINDS]
    return {
        "name": result.name,
        "autoscaler": result.autoscaler,
        "duration_s": duration,
        "end_s": result.end_s,
        "wall_s": round(result.wall_s, 3),
        "speed": round(result.end_s / result.wall_s, 1) if result.wall_s > 0 else None,
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
        "requests": {"total": total, "finished": finished, "failed": failed},
        "attainment_pct": {
            "ttft": _pct(ttft_met, total),
            "tpot": _pct(tpot_met, total),
            "both": _pct(both_met, total),
        },
        "goodput": {
            "requests": both_met,
            "requests_per_s": _round(both_met / duration) if duration > 0 else None,
            "output_tokens_per_s": _round(good_tokens / duration, 3) if duration > 0 else None,
        },
        "latency_s": {
            "ttft": _percentiles(ttft_sorted),
            "tpot": _percentiles(tpot_sorted),
            "e2e": _percentiles(e2e_sorted),
        },
        "tiers": tiers,
        "output_tokens": all_tokens,
        "usd_per_1m_tokens": _round(_per_million(result.cloud_cost, all_tokens)),
        "cloud_gpu_seconds": round(result.gpu_seconds.get("cloud", 0.0), 3),
        "cloud_cost": round(result.cloud_cost, 6),
        "cold_starts": result.cold_starts,
        "first_scale_out_s": result.first_scale_out_s,
        "peak_replicas": {tier: result.peak_replicas.get(tier, 0) for tier in TIERS},
        "decisions": {
            "by_kind": dict(sorted(by_kind.items())),
            "recent": [_decision(d) for d in shown[-RECENT_DECISIONS:]],
            "not_shown": sum(by_kind.values()) - sum(d.count for d in shown[-RECENT_DECISIONS:]),
        },
    }


def _decision(d: Decision) -> dict[str, Any]:
    return {
        "t_s": d.t_s,
        "kind": d.kind,
        "subject": d.subject,
        "message": d.message,
        "count": d.count,
    }


def decisions_json(result: SimResult, limit: int | None = None) -> list[dict[str, Any]]:
    """Every decision in time order (the first ``limit`` when given), as plain values; a
    folded decision (the same kind and subject repeated) carries its ``count``."""
    decisions = result.decisions if limit is None else result.decisions[:limit]
    return [_decision(d) for d in decisions]


# -- windows --------------------------------------------------------------------------------------


def _boundaries(times: Sequence[float], step_s: float) -> list[int]:
    """Indices of the timeline points that close a window at least ``step_s`` long (every
    point when 0); a short tail joins the last window, and points at the same time as the
    one before add no empty window."""
    bounds = [0]
    for j in range(1, len(times)):
        if times[j] > times[bounds[-1]] and times[j] - times[bounds[-1]] >= step_s:
            bounds.append(j)
    last = len(times) - 1
    if bounds[-1] != last and len(bounds) > 1:
        bounds[-1] = last
    return bounds


def windows(result: SimResult, step_s: float | None = None) -> list[dict[str, Any]]:
    """One window per timeline interval (or per run of them at least ``step_s`` long).

    Each: ``t_s``/``end_s`` (the interval), ``arrivals`` and ``arrivals_per_s`` (from the
    timeline: every request, failed ones too), ``finished`` and ``ttft_p90_s`` of the
    finished requests that *arrived* in it (None when none did), ``failed`` (by the time
    they were given up), ``allocated``/``ready`` per tier, ``desired``, ``in_flight``,
    ``held`` at its end, ``cloud_cost`` in it and ``cloud_cost_total`` at its end.
    Bucketing is one bisect per request, so 4 M requests cost O(n log windows).
    """
    points = result.timeline
    if len(points) < 2:
        return []
    bounds = _boundaries([p.t_s for p in points], step_s or 0.0)
    edges = [points[b].t_s for b in bounds]
    n = len(bounds) - 1
    if n == 0:
        return []
    ttfts: list[list[float]] = [[] for _ in range(n)]
    req = result.requests
    for arrival, ttft in zip(req.arrival_s, req.ttft_s, strict=True):
        ttfts[min(n - 1, max(0, bisect_right(edges, arrival) - 1))].append(ttft)
    failed = [0] * n
    for t in req.failed_arrival_s:
        failed[min(n - 1, max(0, bisect_right(edges, t) - 1))] += 1
    out: list[dict[str, Any]] = []
    for k in range(n):
        start, end = points[bounds[k]], points[bounds[k + 1]]
        arrivals = sum(p.arrivals for p in points[bounds[k] + 1 : bounds[k + 1] + 1])
        dt = end.t_s - start.t_s
        ttfts[k].sort()
        out.append(
            {
                "t_s": start.t_s,
                "end_s": end.t_s,
                "arrivals": arrivals,
                "arrivals_per_s": round(arrivals / dt, 6) if dt > 0 else None,
                "finished": len(ttfts[k]),
                "ttft_p90_s": _round(nearest_rank(ttfts[k], 90)),
                "failed": failed[k],
                "desired": end.desired,
                "allocated": {t: end.allocated.get(t, 0) for t in TIERS},
                "ready": {t: end.ready.get(t, 0) for t in TIERS},
                "in_flight": end.in_flight,
                "held": end.held,
                "cloud_cost": round(end.cloud_cost - start.cloud_cost, 6),
                "cloud_cost_total": round(end.cloud_cost, 6),
            }
        )
    return out


# -- rendering ------------------------------------------------------------------------------------


def clock(t_s: float) -> str:
    """Simulated time as ``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = max(0, int(t_s))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _num(value: float | None, fmt: str = ".2f", unit: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{unit}"


def _ms(value: float | None) -> str:
    """A latency: ms under a second (a decimal under 100 ms), seconds from there."""
    if value is None:
        return "–"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value * 1000:.0f} ms"


def _money(value: float | None) -> str:
    return "–" if value is None else f"${value:,.2f}"


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """The run at a glance: SLO attainment, goodput, latencies, tiers, scaling decisions."""
    s = summary
    req, att, gp, slo = s["requests"], s["attainment_pct"], s["goodput"], s["slo"]
    speed = f", {s['speed']:g}x real time" if s.get("speed") else ""
    console.print(
        f"[bold]{s['name']}[/bold] (autoscaler {s['autoscaler']}): "
        f"{clock(s['duration_s'])} simulated in {s['wall_s']:.1f}s{speed}"
    )
    console.print(
        f"Requests: {req['total']} ({req['finished']} finished, {req['failed']} failed)   "
        f"SLO (TTFT ≤ {slo['ttft_s'] * 1000:g} ms, TPOT ≤ {slo['tpot_s'] * 1000:g} ms): "
        f"TTFT {_num(att['ttft'], '.1f', ' %')}, TPOT {_num(att['tpot'], '.1f', ' %')}, "
        f"both [bold]{_num(att['both'], '.1f', ' %')}[/bold]"
    )
    console.print(
        f"Goodput: {_num(gp['requests_per_s'], '.3f')} requests/s, "
        f"{_num(gp['output_tokens_per_s'], '.1f')} output tokens/s"
    )
    latency = Table(title="Latency", title_justify="left")
    latency.add_column("")
    for p in PERCENTILES:
        latency.add_column(f"p{p}", justify="right")
    for name, key in (("TTFT", "ttft"), ("TPOT", "tpot"), ("E2E", "e2e")):
        latency.add_row(name, *(_ms(s["latency_s"][key][f"p{p}"]) for p in PERCENTILES))
    console.print(latency)
    tiers = Table(title="Tiers", title_justify="left")
    for col in ("tier", "paid", "GPU-h", "cost", "output tokens", "$/1M tokens", "peak replicas"):
        tiers.add_column(col, justify="left" if col in ("tier", "paid") else "right")
    for name, t in s["tiers"].items():
        tiers.add_row(
            name,
            t["paid"],
            f"{t['gpu_hours']:.2f}",
            _money(t["cost"]),
            f"{t['output_tokens']:,}",
            _money(t["usd_per_1m_tokens"]),
            str(t["peak_replicas"]),
        )
    console.print(tiers)
    first = s["first_scale_out_s"]
    console.print(
        f"Cold starts: {s['cold_starts']}   First scale-out: "
        f"{'never' if first is None else clock(first)}   "
        f"Overall $/1M tokens: {_money(s['usd_per_1m_tokens'])}"
    )
    decisions = s["decisions"]
    if decisions["recent"]:
        console.print("Decisions:")
        for d in decisions["recent"]:
            times = f" (x{d['count']})" if d["count"] > 1 else ""
            console.print(
                Text(
                    f"  {clock(d['t_s']):>8}  {d['kind']:<17} {d['subject']}: {d['message']}{times}"
                )
            )
    if decisions["not_shown"]:
        kinds = ", ".join(f"{k} {n}" for k, n in decisions["by_kind"].items())
        console.print(f"  … and {decisions['not_shown']} more decisions (all: {kinds})")


@dataclass(frozen=True)
class _Column:
    header: str
    read: Callable[[dict[str, Any]], Any]
    show: Callable[[Any], str]
    higher_is_better: bool


COMPARED = (
    _Column("SLO % (both)", lambda s: s["attainment_pct"]["both"], lambda v: f"{v:.1f} %", True),
    _Column("TTFT p90", lambda s: s["latency_s"]["ttft"]["p90"], _ms, False),
    _Column("cloud GPU-h", lambda s: s["tiers"]["cloud"]["gpu_hours"], lambda v: f"{v:.2f}", False),
    _Column("cloud cost", lambda s: s["cloud_cost"], _money, False),
    _Column("cloud $/1M tok", lambda s: s["tiers"]["cloud"]["usd_per_1m_tokens"], _money, False),
    _Column("$/1M tok", lambda s: s["usd_per_1m_tokens"], _money, False),
    _Column("cold starts", lambda s: s["cold_starts"], str, False),
    _Column("peak cloud", lambda s: s["peak_replicas"]["cloud"], str, False),
)


def compared(
    summaries: Sequence[tuple[str, dict[str, Any]]],
) -> tuple[list[list[Any]], list[Any]]:
    """Each configuration's value per :data:`COMPARED` column, and each column's best
    (highest or lowest as the column says; None when no configuration has a value)."""
    values = [[column.read(s) for column in COMPARED] for _, s in summaries]
    best: list[Any] = []
    for i, column in enumerate(COMPARED):
        present = [row[i] for row in values if row[i] is not None]
        best.append(
            None if not present else max(present) if column.higher_is_better else min(present)
        )
    return values, best


def render_comparison(summaries: list[tuple[str, dict[str, Any]]], console: Console) -> None:
    """One row per configuration; the best value of each column in bold (ties all bold)."""
    table = Table(title="Comparison", title_justify="left")
    table.add_column("configuration", no_wrap=True, min_width=12)
    for column in COMPARED:
        table.add_column(column.header, justify="right")
    values, best = compared(summaries)
    for (name, _), row in zip(summaries, values, strict=True):
        cells = [
            Text(
                "–" if value is None else column.show(value),
                style="bold" if value is not None and value == best[i] else "",
            )
            for i, (column, value) in enumerate(zip(COMPARED, row, strict=True))
        ]
        table.add_row(Text(name), *cells)
    console.print(table)


__all__ = [
    "COMPARED",
    "clock",
    "compared",
    "decisions_json",
    "nearest_rank",
    "render_comparison",
    "render_summary",
    "summarize",
    "windows",
]
