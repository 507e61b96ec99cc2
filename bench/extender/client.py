"""The Kubernetes client on the extender's hot path, side by side on the test control plane:
tierserve's own (aiohttp, JSON as dicts; ``runtime/kube/client.py``) against lightkube
(httpx2, msgspec models), the best-kept async client with typed models.

What the extender does per pod and per cache refresh:

* bind: ``POST pods/{name}/binding`` (one per scheduled pod, on kube-scheduler's path);
* get: ``GET pods/{name}`` (a bind no filter preceded);
* list: ``GET pods`` of the whole cluster (a relist: start, a broken watch, a new leader).

Each figure is the median of ``--rounds`` rounds, both clients in the same round, in
alternating order. ``pip install lightkube==1.0.1`` first (it is not a dependency).

    python bench/extender/client.py [--pods 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from typing import Any

import msgspec
from lightkube import AsyncClient, KubeConfig
from lightkube.models.core_v1 import ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod
from lightkube.resources.core_v1 import Pod as PodResource

from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.testing.kube import control_plane

NS = "default"


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "schedulerName": "nobody",  # no scheduler binds them: the bench does
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1m"}}}],
        },
    }


async def _setup(kube: KubeClient, names: list[str]) -> None:
    cap = {"cpu": "100k", "memory": "1Ti", "pods": "100k"}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-node"}}
    await kube.create("/api/v1/nodes", node)
    await kube.patch("/api/v1/nodes/bench-node/status", {"status": {"capacity": cap}})
    for start in range(0, len(names), 50):
        await asyncio.gather(
            *(
                kube.create(f"/api/v1/namespaces/{NS}/pods", _pod(n))
                for n in names[start : start + 50]
            )
        )


async def _ours_bind(kube: KubeClient, names: list[str]) -> float:
    start = time.perf_counter()
    for name in names:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": NS},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "bench-node"},
        }
        await kube.request("POST", f"/api/v1/namespaces/{NS}/pods/{name}/binding", body)
    return time.perf_counter() - start


async def _lk_bind(client: AsyncClient, names: list[str]) -> float:
    start = time.perf_counter()
    for name in names:
        binding = PodResource.Binding(
            metadata=ObjectMeta(name=name, namespace=NS),
            target=ObjectReference(apiVersion="v1", kind="Node", name="bench-node"),
        )
        # the API server answers a Binding with a Status, which lightkube 1.0.1 decodes
        # as a Binding and refuses: the bind itself succeeded (201)
        with contextlib.suppress(msgspec.ValidationError):
            await client.create(binding, name=name, namespace=NS)
    return time.perf_counter() - start


async def _ours_get(kube: KubeClient, names: list[str]) -> float:
    start = time.perf_counter()
    for name in names:
        await kube.request("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
    return time.perf_counter() - start


async def _lk_get(client: AsyncClient, names: list[str]) -> float:
    start = time.perf_counter()
    for name in names:
        await client.get(Pod, name=name, namespace=NS)
    return time.perf_counter() - start


async def _ours_list(kube: KubeClient) -> float:
    start = time.perf_counter()
    listed = await kube.request("GET", "/api/v1/pods")
    assert listed["items"]
    return time.perf_counter() - start


async def _lk_list(client: AsyncClient) -> float:
    start = time.perf_counter()
    items = [p async for p in client.list(Pod, namespace="*")]
    assert items
    return time.perf_counter() - start


async def _bench(kubeconfig: str, pods: int, rounds: int) -> list[str]:
    config = load_config(kubeconfig)
    results: dict[str, dict[str, list[float]]] = {
        k: {"tierserve": [], "lightkube": []} for k in ("bind", "get", "list")
    }
    async with KubeClient(config) as kube:
        names = [f"bench-{r}-{c}-{i}" for r in range(rounds) for c in "ol" for i in range(pods)]
        await _setup(kube, names)
        client = AsyncClient(KubeConfig.from_file(kubeconfig))
        try:
            for r in range(rounds):
                ours = [n for n in names if n.startswith(f"bench-{r}-o-")]
                theirs = [n for n in names if n.startswith(f"bench-{r}-l-")]
                order = ["tierserve", "lightkube"] if r % 2 == 0 else ["lightkube", "tierserve"]
                for who in order:
                    mine = ours if who == "tierserve" else theirs
                    if who == "tierserve":
                        results["bind"][who].append(await _ours_bind(kube, mine))
                        results["get"][who].append(await _ours_get(kube, mine))
                        results["list"][who].append(await _ours_list(kube))
                    else:
                        results["bind"][who].append(await _lk_bind(client, mine))
                        results["get"][who].append(await _lk_get(client, mine))
                        results["list"][who].append(await _lk_list(client))
        finally:
            await client.close()
    total = len(names)
    lines = [f"{pods} pods per client per round, {rounds} rounds, {total} pods in the cluster"]
    for op, per in results.items():
        ours_s = statistics.median(per["tierserve"])
        theirs_s = statistics.median(per["lightkube"])
        unit = f"list of {total} pods" if op == "list" else f"{pods} sequential {op}s"
        scale = 1 if op == "list" else pods
        lines.append(
            f"{op:5} ({unit}): tierserve {ours_s / scale * 1000:.2f} ms, lightkube "
            f"{theirs_s / scale * 1000:.2f} ms per call; lightkube/tierserve "
            f"{theirs_s / ours_s:.2f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    with control_plane() as plane:
        for line in asyncio.run(_bench(str(plane.kubeconfig), args.pods, args.rounds)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
