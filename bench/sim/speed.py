"""How fast the simulator runs: simulated seconds per wall second, and how it scales.

1. **24 h at 50 req/s** (about 4.3 M requests, a diurnal load with noise) on 8 IDC nodes
   x 8 V100s plus a virtual node, one service autoscaled on in-flight requests: the
   whole run under 5 minutes on one core is the goal (``--hours`` shortens it).
2. **Scale**: the same hour of load on 10, 100 and 1,000 nodes with up to 200 replicas
   (a 1000-node cluster is mostly idle: the time per request must not grow faster than
   the cluster does).

Not a test: ``python bench/sim/speed.py [--hours 24] [--skip-scale]``. Prints requests,
wall seconds, simulated/wall speed and requests per wall second per run; run it on an
idle machine (it is single-threaded) and compare runs made in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from tierserve.model.loader import parse_object
from tierserve.sim.run import simulate
from tierserve.sim.scenario import parse

COMMAND = (
    "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 --served-model-name deepseek-r1 "
    "--max-model-len 32768 --gpu-memory-utilization 0.95 --dtype=half"
)


def nodes(idc: int, gpus: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"idc{i:04d}", "labels": {"pool": "idc"}},
            "spec": {"gpu": {"model": "V100-32G", "emulated": True}},
            "status": {"capacity": {"nvidia.com/gpu": str(gpus), "cpu": "64", "memory": "512Gi"}},
        }
        for i in range(idc)
    ]
    out.append(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "virtual-kubelet", "labels": {"type": "virtual-kubelet"}},
            "spec": {
                "taints": [
                    {"key": "virtual-kubelet.io/provider", "value": "x", "effect": "NoSchedule"}
                ],
                "virtual": {"coldStartSeconds": 80, "pricePerGpuHour": 2.5, "gpuQuota": 64},
                "gpu": {"model": "V100-32G", "emulated": True},
            },
            "status": {"capacity": {"nvidia.com/gpu": "1000", "cpu": "10k", "memory": "100Ti"}},
        }
    )
    return out


def scenario(hours: float, idc: int, gpus: int, rate: float, max_replicas: int) -> Any:
    policy = {
        "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
        "kind": "ResourcePolicy",
        "metadata": {"name": "llm"},
        "spec": {
            "selector": {"app": "isvc.llm-predictor"},
            "strategy": "prefer",
            "units": [
                {"resource": "ecs", "nodeSelector": {"pool": "idc"}},
                {"resource": "eci"},
            ],
        },
    }
    service = {
        "apiVersion": "serving.tierserve.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "llm"},
        "spec": {
            "gpus": 1,
            "replicas": 4,
            "minReplicas": 4,
            "maxReplicas": max_replicas,
            "scaleMetric": "tierserve:inflight_requests",
            "scaleTarget": 8,
            "command": COMMAND,
        },
    }
    for obj in [*nodes(idc, gpus), policy, service]:
        parse_object(obj)  # fail fast on a typo here
    doc = {
        "apiVersion": "sim.tierserve.io/v1alpha1",
        "kind": "Scenario",
        "metadata": {"name": f"speed-{idc}x{gpus}"},
        "spec": {
            "duration": hours * 3600,
            "seed": 1,
            "warmStart": True,
            "controllers": {
                "tickSeconds": 1,
                "metricsIntervalSeconds": 5,
                "autoscaler": {"periodSeconds": 15},
            },
            "objects": [*nodes(idc, gpus), policy, service],
            "workload": {
                "kind": "diurnal",
                "rate": rate,
                "peakToTrough": 3,
                "noise": {"cv": 0.1},
                "promptTokens": {"dist": "lognormal", "mean": 600, "sd": 400, "max": 4000},
                "outputTokens": {"dist": "lognormal", "mean": 200, "sd": 150, "max": 1024},
            },
        },
    }
    return parse(doc, "speed")


def run(label: str, sc: Any) -> dict[str, Any]:
    started = time.process_time()
    result = simulate(sc)
    cpu = time.process_time() - started
    n = len(result.requests) + len(result.requests.failed_arrival_s)
    row = {
        "run": label,
        "requests": n,
        "wall_s": round(result.wall_s, 1),
        "cpu_s": round(cpu, 1),
        "speed": round(sc.duration_s / result.wall_s, 0),
        "requests_per_wall_s": round(n / result.wall_s),
        "peak_replicas": result.peak_replicas,
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args()
    run(
        f"{args.hours:g} h at {args.rate:g} req/s, 8 IDC x 8 GPUs + virtual",
        scenario(args.hours, 8, 8, args.rate, 120),
    )
    if args.skip_scale:
        return
    for idc in (10, 100, 1000):
        run(f"1 h at {args.rate:g} req/s, {idc} nodes x 1 GPU", scenario(1, idc, 1, args.rate, 200))


if __name__ == "__main__":
    main()
