"""The replica and cost ledger on Kubernetes: the same names, labels and billing as the
local control plane's, from the extender's cache."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from tierserve.runtime.kube.cache import ClusterCache
from tierserve.runtime.kube.ledger import KubeLedger

Obj = dict[str, Any]
T0 = 1_800_000_000.0


def node(name: str, virtual: bool, price: str | None = None) -> Obj:
    cap = {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "8", "pods": "110"}
    meta: Obj = {"name": name, "labels": {"type": "virtual-kubelet"} if virtual else {}}
    if price is not None:
        meta["annotations"] = {"tierserve.io/price-per-gpu-hour": price}
    return {"metadata": meta, "spec": {}, "status": {"capacity": cap, "allocatable": cap}}


def pod(name: str, node_name: str | None, gpus: int, uid: str) -> Obj:
    requests = {"cpu": "1", "nvidia.com/gpu": str(gpus)}
    status: Obj = {"phase": "Pending"}
    spec: Obj = {"containers": [{"name": "c", "resources": {"requests": requests}}]}
    if node_name is not None:
        spec["nodeName"] = node_name
        status = {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True",
             "lastTransitionTime": "2027-01-15T08:00:00Z"},
            {"type": "Ready", "status": "True"}]}  # fmt: skip
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid,
                     "labels": {"servingName": "deepseek"}},
        "spec": spec,
        "status": status,
    }  # fmt: skip


def series(name: str, **labels: str) -> str:
    """A sample's name as Prometheus text writes it (labels sorted)."""
    every = {"namespace": "default", "service": "deepseek", **labels}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(every.items())) + "}"


def scrape(ledger: KubeLedger) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(ledger)
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_gpu_seconds_and_cloud_cost_accrue_from_binding_at_the_nodes_price() -> None:
    now = [T0 + 10]
    cache = ClusterCache()
    cache.set_node(node("idc001", virtual=False))
    cache.set_node(node("vk", virtual=True, price="3.6"))
    ledger = KubeLedger(cache, clock=lambda: now[0])
    ledger.observe()  # the first look: what was bound before it is billed from now
    cache.set_pod(pod("a", "idc001", 1, "u-a"))
    cache.set_pod(pod("b", "vk", 2, "u-b"))  # bound at T0 (PodScheduled), seen at T0 + 10
    cache.set_pod(pod("c", None, 1, "u-c"))  # Pending: no node, nothing billed
    now[0] = T0 + 100
    got = scrape(ledger)
    idc = series("tierserve_gpu_seconds_total", node="idc001", tier="idc")
    vk = series("tierserve_gpu_seconds_total", node="vk", tier="cloud")
    assert got[idc] == 100.0  # bound at T0, 1 GPU
    assert got[vk] == 200.0  # 2 GPUs
    assert got[series("tierserve_cloud_gpu_seconds_total")] == 200
    # 200 GPU-s at 3.6 per GPU-hour
    cost = got[series("tierserve_cloud_cost_total")]
    assert abs(cost - 0.2) < 1e-9
    pending = series("tierserve_replicas", node="", phase="Pending", tier="")
    assert got[pending] == 1
    # the next look bills only the time since the last one; a pod gone is billed no more
    cache.set_pod(pod("b", "vk", 2, "u-b"), deleted=True)
    now[0] = T0 + 110
    again = scrape(ledger)
    assert again[idc] == 110.0 and again[vk] == 200.0


def test_a_standby_neither_bills_nor_exports() -> None:
    import asyncio

    cache = ClusterCache()
    cache.set_node(node("idc001", virtual=False))
    cache.set_pod(pod("a", "idc001", 1, "u-a"))
    ledger = KubeLedger(cache, clock=lambda: T0 + 100, leading=asyncio.Event())
    assert scrape(ledger) == {}


def test_a_restarted_ledger_bills_pods_already_bound_from_its_first_look() -> None:
    now = [T0 + 1000]
    cache = ClusterCache()
    cache.set_node(node("idc001", virtual=False))
    cache.set_pod(pod("a", "idc001", 1, "u-a"))  # bound at T0, long before this process
    ledger = KubeLedger(cache, clock=lambda: now[0])
    ledger.observe()
    now[0] = T0 + 1030
    got = scrape(ledger)
    assert got[series("tierserve_gpu_seconds_total", node="idc001", tier="idc")] == 30.0
