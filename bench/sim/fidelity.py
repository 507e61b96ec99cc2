"""Fidelity: the simulator against the real local runtime on bench/autoscale/compare.py.

For each of compare.py's five configurations this simulates ``seed-burst.yaml`` with that
configuration's autoscaling (``tierserve/examples/sim/autoscaling/<name>.yaml``) and
**the very arrivals compare.py sends** (``tierserve bench --rate R --seed S``'s Poisson
schedule for each phase, converted to emulated time), then prints the simulated figures
next to the real ones from a compare.py results file, with the bounds of the simulator
issue: SLO attainment within 3 points, burst TTFT p90 and cloud GPU-seconds within 10 %,
first scale-out within one HPA period (15 s). A results file with several rounds of each
configuration (``compare.py --repeat N``) is compared on medians: each figure's median over
the real rounds against its median over the same rounds simulated, each at its own phase.

The real autoscaler's periods start when ``tierserve up`` does, so the burst falls at a
different point of its 15-s period each run: with the same arrivals, a step seen 3 s into
the burst and one seen 3 s later can be a whole period apart. By default the simulated
autoscaler evaluates at the phase the real run had (its first ``SuccessfulRescale``
event's time modulo the period, printed per row); ``--no-align`` starts it at the first
tick instead, which shows how much of a difference is that phase alone.

    python bench/sim/fidelity.py [--real bench/autoscale/results/latest.json] [--json OUT]
        [--no-align]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "bench" / "autoscale"))

from compare import PHASES, Settings, median_figures, run_figures  # noqa: E402

from tierserve.loadgen.schedule import poisson_schedule  # noqa: E402
from tierserve.sim import scenario as sc  # noqa: E402
from tierserve.sim.report import nearest_rank  # noqa: E402
from tierserve.sim.workload import Arrival  # noqa: E402
from tierserve.sim.world import SimResult, Simulation  # noqa: E402

EXAMPLES = ROOT / "tierserve" / "examples" / "sim"
BURST = (90.0, 270.0)
LOAD_END = 540.0


def compare_arrivals(s: Settings) -> list[Arrival]:
    """compare.py's arrivals in emulated seconds from the start of the load."""
    out: list[Arrival] = []
    start = 0.0
    for ph in PHASES:
        ts = s.time_scale
        wall = poisson_schedule(ph.rate / ts, ph.seed, duration_s=ph.duration_s * ts)
        out += [Arrival(start + t / ts, s.prompt_words + 5, s.max_tokens) for t in wall]
        start += ph.duration_s
    return out


def phase_of(run: dict[str, Any] | None, period_s: float) -> float | None:
    """The real autoscaler's phase: its first rescale's time (emulated seconds from the
    load's start) modulo the period; None when the run recorded none."""
    events = (run or {}).get("events") or []
    times = [e["t_s"] for e in events if e.get("reason") == "SuccessfulRescale" and "t_s" in e]
    return min(times) % period_s if times else None


SCRAPE_LAG_S = 0.65
"""Emulated seconds from an evaluation of the real autoscaler to the scrape after it. The
local runtime's scrape loop and its autoscaler's ticks start together and run locked, the
scrape just after the evaluation, so each evaluation reads the sample of almost one
interval before: logged at each evaluation of three waiting-1 runs, 0.82-0.99 wall s old
(median 0.87, i.e. 4.35 emulated s at time scale 0.2 and a 5-s interval)."""


def simulate(
    config: str,
    arrivals: list[Arrival],
    phase_s: float | None = None,
    scrape_lag_s: float | None = SCRAPE_LAG_S,
) -> SimResult:
    """``config`` on compare.py's arrivals; with ``phase_s``, the autoscaler evaluates at
    that phase and (unless ``scrape_lag_s`` is None) reads samples as old as the real one's."""
    key, values = sc.parse_vary(f"autoscaling=@autoscaling/{config}.yaml", EXAMPLES)
    scenario = sc.load(EXAMPLES / "seed-burst.yaml", {key: values[0][1]})
    metrics_phase = None if phase_s is None or scrape_lag_s is None else phase_s + scrape_lag_s
    settings = dataclasses.replace(
        scenario.settings, autoscaler_phase_s=phase_s, metrics_phase_s=metrics_phase
    )
    sim = Simulation(
        scenario.objects,
        iter(arrivals),
        scenario.duration_s,
        settings=settings,
        slo=scenario.slo,
        name=config,
    )
    return sim.run()


def figures(result: SimResult) -> dict[str, float | None]:
    req = result.requests
    slo = result.slo
    total = len(req) + len(req.failed_arrival_s)
    good = sum(
        1
        for a, b in zip(req.ttft_s, req.tpot_s, strict=True)
        if a <= slo.ttft_s and b <= slo.tpot_s
    )
    burst = sorted(
        t for a, t in zip(req.arrival_s, req.ttft_s, strict=True) if BURST[0] <= a < BURST[1]
    )
    at_end = min(result.timeline, key=lambda p: abs(p.t_s - LOAD_END))
    return {
        "requests": total,
        "slo_pct": 100.0 * good / max(1, total),
        "burst_ttft_p90_s": nearest_rank(burst, 90) if burst else None,
        "cloud_gpu_s": at_end.gpu_seconds["cloud"],
        "first_scale_out_s": result.first_scale_out_s,
    }


def real_figures(run: dict[str, Any]) -> dict[str, float | None]:
    total = sum(p["requests"] for p in run["phases"].values())
    return {"requests": total, **run_figures(run)}


def _rel(sim: float | None, real: float | None) -> float | None:
    if sim is None or real is None or real == 0:
        return None
    return (sim - real) / real


def within(r: dict[str, float | None], s: dict[str, float | None]) -> dict[str, Any]:
    """The differences sim - real and whether each is within the simulator issue's bound."""
    d_slo = s["slo_pct"] - r["slo_pct"]  # type: ignore[operator]
    d_ttft = _rel(s["burst_ttft_p90_s"], r["burst_ttft_p90_s"])
    d_gpu = _rel(s["cloud_gpu_s"], r["cloud_gpu_s"])
    fs, fr = s["first_scale_out_s"], r["first_scale_out_s"]
    d_first = None if fs is None or fr is None else fs - fr
    return {
        "d": {"slo": d_slo, "ttft": d_ttft, "gpu": d_gpu, "first": d_first},
        "ok": {
            "slo": abs(d_slo) <= 3.0,
            "ttft": d_ttft is not None and abs(d_ttft) <= 0.10,
            "gpu": d_gpu is not None and abs(d_gpu) <= 0.10,
            "first": d_first is not None and abs(d_first) <= 15.0,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", type=Path, default=ROOT / "bench/autoscale/results/latest.json")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-align", action="store_true", help="the autoscaler's phase: first tick")
    ap.add_argument(
        "--scrape-lag",
        type=float,
        default=SCRAPE_LAG_S,
        metavar="S",
        help="emulated s from a real evaluation to the next scrape (negative: the simulator's "
        "own scrape grid)",
    )
    args = ap.parse_args()
    document = json.loads(args.real.read_text())
    runs = {(r["config"], r.get("round", 1)): r for r in document.get("runs", [])}
    by_config: dict[str, list[dict[str, Any]]] = {}
    for row in document["summary"]:
        if not row.get("error"):
            by_config.setdefault(row["config"], []).append(row)
    # the run's own settings: its time scale shapes the arrivals (rate / scale per wall s)
    settings = Settings(**document.get("settings", {}))
    period = settings.hpa_period_s
    arrivals = compare_arrivals(settings)
    lag = None if args.scrape_lag < 0 else args.scrape_lag
    rows = []
    header = (
        f"{'config':<18}{'rounds':>7}{'requests':>10}{'SLO % real/sim (Δpt)':>26}"
        f"{'burst TTFT p90 s':>26}{'cloud GPU-s':>24}{'first scale-out s':>24}"
    )
    print(f"real: {args.real}  (arrivals: compare.py's own, {len(arrivals)} requests)")
    print("each figure: the median over the real run's rounds / over the same rounds simulated")
    print("at each round's own phase")
    print(header)
    for config, reals in by_config.items():
        rounds = []
        for row in reals:
            run = runs.get((config, row.get("round", 1)))
            phase = None if args.no_align else phase_of(run, period)
            r, s = real_figures(row), figures(simulate(config, arrivals, phase, lag))
            rounds.append({"round": row.get("round", 1), "phase_s": phase, "real": r, "sim": s})
        r = median_figures([x["real"] for x in rounds])
        s = median_figures([x["sim"] for x in rounds])
        w = within(r, s)
        d, ok = w["d"], w["ok"]
        mark = {k: "" if v else " ✗" for k, v in ok.items()}

        def pct(x: float | None) -> str:
            return "–" if x is None else f"{100 * x:+.0f}%"

        def num(x: float | None, f: str = "{:.2f}") -> str:
            return "–" if x is None else f.format(x)

        phases = ", ".join(num(x["phase_s"], "{:.1f}") for x in rounds)
        cells = [
            f"{config:<18}{len(rounds):>7}{r['requests']:>5.0f}/{s['requests']:<4.0f}",
            f"{r['slo_pct']:>10.1f} / {s['slo_pct']:.1f} ({d['slo']:+.1f}){mark['slo']:<2}",
            f"{num(r['burst_ttft_p90_s']):>10} / {num(s['burst_ttft_p90_s'])}",
            f" ({pct(d['ttft'])}){mark['ttft']:<2}",
            f"{num(r['cloud_gpu_s'], '{:.0f}'):>8} / {num(s['cloud_gpu_s'], '{:.0f}')}",
            f" ({pct(d['gpu'])}){mark['gpu']:<2}",
            f"{num(r['first_scale_out_s'], '{:.0f}'):>8} / {num(s['first_scale_out_s'], '{:.0f}')}",
            f" ({num(d['first'], '{:+.0f}')}){mark['first']}",
            f"   phases {phases} s",
        ]
        print("".join(cells))
        rows.append({"config": config, "real": r, "sim": s, "within": ok, "rounds": rounds})
    n_ok = sum(sum(r["within"].values()) for r in rows)
    n_all = sum(len(r["within"]) for r in rows)
    n_cfg = sum(all(r["within"].values()) for r in rows)
    print(f"{n_ok} of {n_all} figures within bounds; {n_cfg} of {len(rows)} configurations")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
