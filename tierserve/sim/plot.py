"""One PNG of a simulation run: four panels sharing the time axis.

1. replicas per tier, allocated stacked (IDC under cloud), with a line in each tier's band
   at its Ready count (stacked the same way: the gap above the line is still starting);
2. load: arrivals per second;
3. TTFT p90 of the requests that arrived in each window, against the SLO;
4. the cloud cost, cumulative.

matplotlib is an optional dependency (``pip install 'tierserve[sim]'``), imported when a
plot is drawn so the simulator runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tierserve.errors import NeverPossible
from tierserve.sim.report import windows as make_windows
from tierserve.sim.world import TIERS, SimResult

DPI = 110
HOURS_FROM_S = 3 * 3600.0
"""Runs longer than this are drawn in hours, shorter ones in minutes."""
COLORS = {"idc": "tab:blue", "cloud": "tab:orange"}


class MatplotlibMissing(NeverPossible):
    """A plot was asked for and matplotlib is not installed."""

    def __init__(self) -> None:
        super().__init__("matplotlib is not installed: pip install 'tierserve[sim]'")


def plot(result: SimResult, path: str | Path, windows: list[dict[str, Any]] | None = None) -> None:
    """Draw ``result`` to the PNG at ``path``; ``windows`` as :func:`report.windows` makes
    them (computed here when not given)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MatplotlibMissing() from exc

    rows = make_windows(result) if windows is None else windows
    hours = result.end_s > HOURS_FROM_S
    scale, unit = (3600.0, "h") if hours else (60.0, "min")
    # Each window's figures hold over [t_s, end_s): drawn as steps from its start.
    xs = [w["t_s"] / scale for w in rows] + ([rows[-1]["end_s"] / scale] if rows else [])

    def steps(values: list[float]) -> list[float]:
        return values + values[-1:]  # repeat the last so the step reaches the end

    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(11, 9), constrained_layout=True)
    ax_rep, ax_load, ax_ttft, ax_cost = axes
    base = [0.0] * len(rows)
    for tier in TIERS:
        allocated = [float(w["allocated"][tier]) for w in rows]
        top = [b + a for b, a in zip(base, allocated, strict=True)]
        ax_rep.fill_between(
            xs,
            steps(base),
            steps(top),
            step="post",
            alpha=0.35,
            color=COLORS[tier],
            label=f"{tier} allocated",
        )
        ready = [b + float(w["ready"][tier]) for b, w in zip(base, rows, strict=True)]
        ax_rep.step(
            xs,
            steps(ready),
            where="post",
            color=COLORS[tier],
            linewidth=1.2,
            label=f"{tier} Ready",
        )
        base = top
    ax_rep.set_ylabel("replicas")
    ax_rep.legend(loc="upper left", fontsize="small", ncol=2)

    load = [float(w["arrivals_per_s"] or 0.0) for w in rows]
    ax_load.step(xs, steps(load), where="post", color="tab:gray")
    ax_load.set_ylabel("arrivals/s")

    ttft = [w["ttft_p90_s"] for w in rows]
    ax_ttft.plot(
        [(w["t_s"] + w["end_s"]) / 2 / scale for w in rows],
        [float("nan") if v is None else v for v in ttft],
        marker=".",
        markersize=3,
        linewidth=1,
        color="tab:purple",
        label="TTFT p90",
    )
    ax_ttft.axhline(
        result.slo.ttft_s,
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"SLO {result.slo.ttft_s:g} s",
    )
    ax_ttft.set_ylabel("TTFT p90 (s)")
    ax_ttft.legend(loc="upper left", fontsize="small")

    # Cumulative: a line through each window's end, from the cost when the first began.
    cost = [float(w["cloud_cost_total"]) for w in rows]
    start = [float(rows[0]["cloud_cost_total"] - rows[0]["cloud_cost"])] if rows else []
    ax_cost.plot(xs, start + cost, color=COLORS["cloud"])
    ax_cost.set_ylabel("cloud cost (cum.)")
    ax_cost.set_xlabel(f"time ({unit})")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)

    fig.suptitle(f"{result.name} — autoscaler {result.autoscaler}")
    fig.savefig(Path(path), dpi=DPI, format="png")
    plt.close(fig)


__all__ = ["MatplotlibMissing", "plot"]
