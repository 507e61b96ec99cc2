"""Micro-benchmark: filter_nodes + score_nodes for one pod over 5,000 nodes, 20,000 pods.

The scheduler extender's goal is a p99 under 10 ms per call. Run:

    .venv/bin/python bench/placement/bench_place.py [--calls 300]

The cluster: 4,000 IDC nodes (8 GPUs, 4 node pools), 1,000 virtual nodes; 20,000 pods of
1,000 services (20 each, half of them already on their IDC pool) plus a ResourcePolicy
per service (IDC pool first, then eci). The snapshot is built once (timed separately);
each call decides for a new pending pod of one service against all 5,000 node names.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from tierserve.model import VIRTUAL_KUBELET_TAINT, Node, Replica, ResourcePolicy
from tierserve.policy.placement import filter_nodes, score_nodes
from tierserve.policy.snapshot import Snapshot

IDC_NODES, VIRTUAL_NODES, PODS, SERVICES, POOLS = 4_000, 1_000, 20_000, 1_000, 4


def build(seed: int = 0) -> tuple[list[Node], list[Replica], list[ResourcePolicy]]:
    rng = random.Random(seed)
    nodes = [
        Node.new(
            f"idc{i:05d}",
            metadata={"labels": {"alibabacloud.com/nodepool-id": f"np-{i % POOLS}"}},
            status={"capacity": {"nvidia.com/gpu": 8, "cpu": 96, "memory": "1Ti", "pods": 110}},
        )
        for i in range(IDC_NODES)
    ]
    taint = VIRTUAL_KUBELET_TAINT.model_dump()
    nodes += [
        Node.new(
            f"virtual-kubelet-{i:04d}",
            spec={"virtual": {}, "taints": [taint]},
            status={"capacity": {"nvidia.com/gpu": 1000, "cpu": 100_000, "memory": "100Ti"}},
        )
        for i in range(VIRTUAL_NODES)
    ]
    policies = [
        ResourcePolicy.new(
            f"svc{s}",
            spec={
                "selector": {"app": f"svc{s}"},
                "units": [
                    {
                        "resource": "ecs",
                        "nodeSelector": {"alibabacloud.com/nodepool-id": f"np-{s % POOLS}"},
                    },
                    {"resource": "eci"},
                ],
            },
        )
        for s in range(SERVICES)
    ]
    pods = []
    for p in range(PODS):
        s = p % SERVICES
        on_idc = p % 2 == 0
        node = (
            f"idc{rng.randrange(IDC_NODES // POOLS) * POOLS + s % POOLS:05d}"
            if on_idc
            else f"virtual-kubelet-{rng.randrange(VIRTUAL_NODES):04d}"
        )
        pods.append(
            Replica.new(
                f"svc{s}-{p}",
                metadata={"labels": {"app": f"svc{s}"}},
                spec={
                    "service": f"svc{s}",
                    "requests": {"nvidia.com/gpu": rng.choice([1, 2]), "cpu": 4, "memory": "12Gi"},
                },
                status={"phase": "Ready", "nodeName": node, "unit": 0 if on_idc else 1},
            )
        )
    return nodes, pods, policies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    nodes, pods, policies = build()
    started = time.perf_counter()
    snapshot = Snapshot.build(nodes, pods)
    build_ms = (time.perf_counter() - started) * 1000
    names = list(snapshot.nodes)
    snapshot.pods_labelled("default", {"app": "svc0"})  # the pod label index: once a snapshot
    samples = []
    cpu_samples = []
    for call in range(args.calls):
        s = call % SERVICES
        pending = Replica.new(
            f"svc{s}-new{call}",
            metadata={"labels": {"app": f"svc{s}"}},
            spec={
                "service": f"svc{s}",
                "requests": {"nvidia.com/gpu": 1, "cpu": 4, "memory": "12Gi"},
            },
        )
        t0, c0 = time.perf_counter(), time.thread_time()
        result = filter_nodes(pending, snapshot, policies, 0.0, names)
        score_nodes(pending, snapshot, result.allowed)
        samples.append((time.perf_counter() - t0) * 1000)
        cpu_samples.append((time.thread_time() - c0) * 1000)
    print(
        f"snapshot build {build_ms:.0f} ms; filter+score over {len(names)} nodes, "
        f"{len(pods)} pods, {len(policies)} policies, {args.calls} calls "
        f"(allowed {len(result.allowed)}):"
    )
    for label, xs in (("wall", samples), ("cpu", cpu_samples)):
        xs.sort()
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        print(
            f"  {label}: p50 {statistics.median(xs):.2f} ms, p99 {p99:.2f} ms, max {xs[-1]:.2f} ms"
        )


if __name__ == "__main__":
    main()
