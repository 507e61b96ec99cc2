"""Extender latency: filter + prioritize for one pod against 5,000 nodes and 20,000 pods.

In process (``Extender.filter`` + ``Extender.prioritize`` on ExtenderArgs dicts) and over
HTTP (aiohttp server on 127.0.0.1, ``nodeCacheCapable: true`` requests, as kube-scheduler
sends them). ``--e2e N`` also schedules N pods end to end on the test control plane with
and without the extender (``e2e.py``: pods per second side by side).

    .venv/bin/python bench/extender/bench.py [--nodes 5000] [--pods 20000] [--rounds 300]
                                             [--e2e 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from typing import Any

import aiohttp
from aiohttp import web

from tierserve.runtime.kube.cache import ClusterCache
from tierserve.runtime.kube.extender import Extender, app

Obj = dict[str, Any]
GROUP = "scheduling.tierserve.io"


def node(i: int, virtual: bool) -> Obj:
    name = f"virtual-kubelet-{i}" if virtual else f"idc{i:04d}"
    cap = {
        "cpu": "1k" if virtual else "96",
        "memory": "4Ti" if virtual else "768Gi",
        "nvidia.com/gpu": "100" if virtual else "8",
        "pods": "10k" if virtual else "110",
    }
    labels = (
        {"type": "virtual-kubelet"} if virtual else {"alibabacloud.com/nodepool-id": f"np-{i % 50}"}
    )
    taints = (
        [{"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"}]
        if virtual
        else []
    )
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"capacity": cap, "allocatable": cap},
    }


def pod(name: str, app_label: str, node_name: str | None, unit: int | None = None) -> Obj:
    annotations = {} if unit is None else {"scheduling.tierserve.io/unit": str(unit)}
    spec: Obj = {
        "containers": [
            {
                "name": "main",
                "resources": {"requests": {"cpu": "4", "memory": "12Gi", "nvidia.com/gpu": "1"}},
            }
        ]
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": name,
            "labels": {"app": app_label},
            "annotations": annotations,
            "creationTimestamp": "2026-11-30T05:50:37Z",
        },
        "spec": spec,
        "status": {"phase": "Running"},
    }


def build(nodes: int, pods: int, policies: int) -> tuple[ClusterCache, list[str]]:
    cache = ClusterCache()
    virtual = max(1, nodes // 50)
    names = []
    for i in range(nodes):
        obj = node(i, virtual=i >= nodes - virtual)
        cache.set_node(obj)
        names.append(obj["metadata"]["name"])
    idc = [n for n in names if n.startswith("idc")]
    for p in range(policies):
        cache.set_policy(
            GROUP,
            {
                "apiVersion": f"{GROUP}/v1alpha1",
                "kind": "ResourcePolicy",
                "metadata": {"name": f"svc{p}", "namespace": "default"},
                "spec": {
                    "selector": {"app": f"svc{p}"},
                    "units": [
                        {
                            "resource": "ecs",
                            "nodeSelector": {"alibabacloud.com/nodepool-id": f"np-{p % 50}"},
                        },
                        {"resource": "eci", "max": 50},
                    ],
                },
            },
        )
    for j in range(pods):
        # 7 of 8 GPUs used on IDC nodes: filter has to look at every node
        cache.set_pod(pod(f"p{j}", f"svc{j % policies}", idc[j % len(idc)], 0))
    cache.snapshot()
    gc.collect()
    gc.freeze()  # as the extender does after its first sync: no full GC over the cache
    return cache, names


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms"


def in_process(extender: Extender, args: Obj, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        reply = extender.filter(args)
        extender.prioritize({**args, "NodeNames": reply["NodeNames"]})
        samples.append(time.perf_counter() - start)
    return samples


async def over_http(extender: Extender, args: Obj, rounds: int) -> list[float]:
    runner = web.AppRunner(app(extender), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    samples = []
    body = json.dumps(args)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        for _ in range(rounds):
            start = time.perf_counter()
            async with session.post("/filter", data=body) as resp:
                reply = await resp.json()
            prio = json.dumps({**args, "NodeNames": reply["NodeNames"]})
            async with session.post("/prioritize", data=prio) as resp:
                await resp.read()
            samples.append(time.perf_counter() - start)
    await runner.cleanup()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--e2e", type=int, default=0, help="pods to schedule end to end")
    opts = parser.parse_args()
    t0 = time.perf_counter()
    cache, names = build(opts.nodes, opts.pods, opts.policies)
    print(
        f"cache: {opts.nodes} nodes, {opts.pods} pods, {opts.policies} policies "
        f"built in {time.perf_counter() - t0:.1f} s"
    )
    incoming = pod("incoming", "svc0", None)
    cache.set_pod(incoming)
    # kube-scheduler's own filters have run: candidates are nodes with a free GPU
    args = {"Pod": incoming, "NodeNames": names, "Nodes": None}
    extender = Extender(cache, None)
    extender.filter(args)  # warm the policy index and per-unit memo
    print("in process  filter+prioritize:", percentiles(in_process(extender, args, opts.rounds)))
    http = asyncio.run(over_http(extender, args, opts.rounds))
    print("HTTP        filter+prioritize:", percentiles(http))
    if opts.e2e:
        from e2e import run

        for line in run(nodes=500, pods=opts.e2e, rounds=3):
            print(line)


if __name__ == "__main__":
    main()
