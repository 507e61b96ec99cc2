"""The tier planner against the HPA over a simulated day (``diurnal-24h.yaml``).

A diurnal load with noise and spikes on an IDC sized for ~60 % of the peak (4 V100s) plus
the seed's virtual node. Runs, side by side: the seed's SM-util HPA, HPA configurations on
LLM-aware metrics, the tier planner at several settings and the clairvoyant oracle (the
planner's arithmetic on the load that will come: the lower bound no real policy beats).
Prints SLO attainment and cloud GPU-hours per configuration, and the ratios the issue asks
for: the planner's cloud GPU-hours against the seed's HPA and against the best HPA at equal
or better SLO, and against the oracle.

    python bench/sim/diurnal.py [--hours 24] [--json bench/sim/results-diurnal.json] [--jobs 2]
        [--p99]

``--jobs N`` runs N configurations at a time, each in its own process (a simulation is
single-threaded and deterministic: the figures do not depend on N, only the wall time).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
from pathlib import Path
from typing import Any

from tierserve.sim import scenario as sc
from tierserve.sim.report import summarize
from tierserve.sim.run import simulate

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tierserve" / "examples" / "sim" / "diurnal-24h.yaml"
SLO = {"ttftSeconds": 2, "tpotSeconds": 0.1, "attainment": 0.95}
P99 = {**SLO, "attainment": 0.99}

HPA: dict[str, dict[str, Any]] = {
    "hpa seed-sm50": {},
    "hpa inflight-10": {"scaleMetric": "tierserve:inflight_requests", "scaleTarget": 10},
    "hpa inflight-8": {"scaleMetric": "tierserve:inflight_requests", "scaleTarget": 8},
    "hpa running-10": {"scaleMetric": "vllm:num_requests_running", "scaleTarget": 10},
    "hpa waiting-1": {"scaleMetric": "vllm:num_requests_waiting", "scaleTarget": 1},
}
PLANNER: dict[str, dict[str, Any]] = {
    "slo headroom 0.1": {"policy": "slo", "slo": SLO, "headroom": 0.1},
    "slo headroom 0.25": {"policy": "slo", "slo": SLO, "headroom": 0.25},
    "slo headroom 0.5": {"policy": "slo", "slo": SLO, "headroom": 0.5},
    "slo headroom 0.75": {"policy": "slo", "slo": SLO, "headroom": 0.75},
    "slo headroom 1.0": {"policy": "slo", "slo": SLO, "headroom": 1.0},
    "slo headroom 1.25": {"policy": "slo", "slo": SLO, "headroom": 1.25},
    "slo headroom 1.5": {"policy": "slo", "slo": SLO, "headroom": 1.5},
    "slo headroom 2.0": {"policy": "slo", "slo": SLO, "headroom": 2.0},
}
P99_PLANNER: dict[str, dict[str, Any]] = {
    # The SLO's quantile is the planner's target (95 % of requests within it); a day at
    # 100.000 % asks for a higher one: one replica's capacity at TTFT p99. Slow (--p99):
    # the model measures 1000 requests a run at q 0.99, 200 at 0.95.
    "slo p99 headroom 0.25": {"policy": "slo", "slo": P99, "headroom": 0.25},
    "slo p99 headroom 0.5": {"policy": "slo", "slo": P99, "headroom": 0.5},
}


def run(label: str, autoscaler: str, autoscaling: dict[str, Any], hours: float) -> dict[str, Any]:
    overrides: dict[str, Any] = {"spec.autoscaler": autoscaler, "spec.duration": hours * 3600}
    if autoscaling:
        overrides["autoscaling"] = autoscaling
    result = simulate(sc.load(SCENARIO, overrides))
    s = summarize(result)
    row = {
        "config": label,
        "slo_pct": s["attainment_pct"]["both"],
        "ttft_p90_s": s["latency_s"]["ttft"]["p90"],
        "cloud_gpu_h": s["cloud_gpu_seconds"] / 3600,
        "cloud_cost": s["cloud_cost"],
        "late": s["requests"]["total"] - s["goodput"]["requests"],
        "cold_starts": s["cold_starts"],
        "requests": s["requests"]["total"],
        "wall_s": round(result.wall_s, 1),
    }
    print(
        f"{label:<20} SLO {row['slo_pct']:7.3f} % ({row['late']} late)  "
        f"cloud GPU-h {row['cloud_gpu_h']:8.2f}  "
        f"cost {row['cloud_cost']:8.2f}  cold starts {row['cold_starts']:4d}  "
        f"({row['requests']} requests, {row['wall_s']} s)",
        flush=True,
    )
    return row


def _oracle(planner: str) -> str:
    """The oracle's label for a planner setting's (``slo ...`` -> ``oracle ...``)."""
    return "oracle" + planner.removeprefix("slo")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=1, help="configurations run at a time")
    ap.add_argument("--p99", action="store_true", help="also the p99 settings (slow)")
    args = ap.parse_args()
    if args.p99:
        PLANNER.update(P99_PLANNER)
    jobs = [(n, "hpa", a) for n, a in HPA.items()]
    jobs += [(n, "slo", {"autoscaling": a}) for n, a in PLANNER.items()]
    jobs += [(_oracle(n), "oracle", {"autoscaling": a}) for n, a in PLANNER.items()]
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run, n, kind, a, args.hours) for n, kind, a in jobs]
        done = [f.result() for f in futures]
    rows = done[: len(HPA)]
    planners = done[len(HPA) : len(HPA) + len(PLANNER)]
    oracles = done[len(HPA) + len(PLANNER) :]
    print()
    for line in verdicts(rows, planners, oracles):
        print(line)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"hpa": rows, "planner": planners, "oracle": oracles}, indent=2)
        )


def verdicts(
    rows: list[dict[str, Any]], planners: list[dict[str, Any]], oracles: list[dict[str, Any]]
) -> list[str]:
    """Each planner setting against the seed's HPA, the cheapest HPA configuration that
    meets the SLO (its attainment target) with no more SLO than the planner's, and its
    oracle."""
    seed, out = rows[0], []
    meets = [h for h in rows if h["slo_pct"] >= 100 * SLO["attainment"]]
    for p in planners:
        better = [h for h in meets if h["late"] >= p["late"]]
        best = min(better, key=lambda h: h["cloud_gpu_h"], default=None)
        twin = next(o for o in oracles if o["config"] == _oracle(p["config"]))
        vs_seed = 1 - p["cloud_gpu_h"] / seed["cloud_gpu_h"] if seed["cloud_gpu_h"] else 0.0
        line = f"{p['config']}: {100 * vs_seed:.1f} % fewer cloud GPU-h than the seed's HPA"
        line += " (at >= its SLO)" if p["late"] <= seed["late"] else " (at a LOWER SLO)"
        if best is not None:
            cut = 1 - p["cloud_gpu_h"] / best["cloud_gpu_h"] if best["cloud_gpu_h"] else 0.0
            line += f"; {100 * cut:.1f} % fewer than the cheapest HPA at <= its SLO"
            line += f" ({best['config']}, {best['late']} late)"
        ratio = p["cloud_gpu_h"] / twin["cloud_gpu_h"] if twin["cloud_gpu_h"] else float("inf")
        line += f"; {ratio:.2f}x the oracle ({twin['slo_pct']:.2f} % SLO)"
        out.append(line)
    return out


if __name__ == "__main__":
    main()
