"""Fidelity: the simulator against the real local runtime on bench/autoscale/compare.py.

For each of compare.py's five configurations this simulates ``seed-burst.yaml`` with that
configuration's autoscaling (``tierserve/examples/sim/autoscaling/<name>.yaml``) and
**the very arrivals compare.py sends** (``tierserve bench --rate R --seed S``'s Poisson
schedule for each phase, converted to emulated time), then prints the simulated figures
next to the real ones from a compare.py results file, with the bounds of the simulator
issue: SLO attainment within 3 points, burst TTFT p90 and cloud GPU-seconds within 10 %,
first scale-out within one HPA period (15 s).

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

from compare import PHASES, Settings  # noqa: E402

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


def simulate(config: str, arrivals: list[Arrival], phase_s: float | None = None) -> SimResult:
    key, values = sc.parse_vary(f"autoscaling=@autoscaling/{config}.yaml", EXAMPLES)
    scenario = sc.load(EXAMPLES / "seed-burst.yaml", {key: values[0][1]})
    settings = dataclasses.replace(scenario.settings, autoscaler_phase_s=phase_s)
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
    return {
        "requests": total,
        "slo_pct": run["goodput_pct"],
        "burst_ttft_p90_s": run["phases"]["burst"]["ttft_p90_s"],
        "cloud_gpu_s": run["cloud_gpu_s"],
        "first_scale_out_s": run["first_scale_out_s"],
    }


def _rel(sim: float | None, real: float | None) -> float | None:
    if sim is None or real is None or real == 0:
        return None
    return (sim - real) / real


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", type=Path, default=ROOT / "bench/autoscale/results/latest.json")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-align", action="store_true", help="the autoscaler's phase: first tick")
    args = ap.parse_args()
    document = json.loads(args.real.read_text())
    real = {r["config"]: r for r in document["summary"]}
    runs = {r["config"]: r for r in document.get("runs", [])}
    period = Settings().hpa_period_s
    arrivals = compare_arrivals(Settings())
    rows = []
    header = (
        f"{'config':<18}{'requests':>10}{'SLO % real/sim (Δpt)':>26}{'burst TTFT p90 s':>26}"
        f"{'cloud GPU-s':>24}{'first scale-out s':>24}"
    )
    print(f"real: {args.real}  (arrivals: compare.py's own, {len(arrivals)} requests)")
    print(header)
    for config, run in real.items():
        r = real_figures(run)
        phase = None if args.no_align else phase_of(runs.get(config), period)
        s = figures(simulate(config, arrivals, phase))
        d_slo = s["slo_pct"] - r["slo_pct"]  # type: ignore[operator]
        d_ttft = _rel(s["burst_ttft_p90_s"], r["burst_ttft_p90_s"])
        d_gpu = _rel(s["cloud_gpu_s"], r["cloud_gpu_s"])
        fs, fr = s["first_scale_out_s"], r["first_scale_out_s"]
        d_first = None if fs is None or fr is None else fs - fr
        ok = {
            "slo": abs(d_slo) <= 3.0,
            "ttft": d_ttft is not None and abs(d_ttft) <= 0.10,
            "gpu": d_gpu is not None and abs(d_gpu) <= 0.10,
            "first": d_first is not None and abs(d_first) <= 15.0,
        }
        mark = {k: "" if v else " ✗" for k, v in ok.items()}

        def pct(x: float | None) -> str:
            return "–" if x is None else f"{100 * x:+.0f}%"

        def num(x: float | None, f: str = "{:.2f}") -> str:
            return "–" if x is None else f.format(x)

        cells = [
            f"{config:<18}{r['requests']:>5}/{s['requests']:<4}",
            f"{r['slo_pct']:>10.1f} / {s['slo_pct']:.1f} ({d_slo:+.1f}){mark['slo']:<2}",
            f"{num(r['burst_ttft_p90_s']):>10} / {num(s['burst_ttft_p90_s'])}",
            f" ({pct(d_ttft)}){mark['ttft']:<2}",
            f"{num(r['cloud_gpu_s'], '{:.0f}'):>8} / {num(s['cloud_gpu_s'], '{:.0f}')}",
            f" ({pct(d_gpu)}){mark['gpu']:<2}",
            f"{num(fr, '{:.0f}'):>8} / {num(fs, '{:.0f}')}",
            f" ({num(d_first, '{:+.0f}')}){mark['first']}",
            f"   phase {num(phase, '{:.1f}')} s",
        ]
        print("".join(cells))
        rows.append({"config": config, "real": r, "sim": s, "within": ok, "phase_s": phase})
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
