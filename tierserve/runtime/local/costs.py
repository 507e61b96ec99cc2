"""What replicas cost: GPU-seconds per service and tier, cloud cost, replicas by phase,
as the API's ``/api/v1/cost`` summary and as Prometheus families."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tierserve.model import Replica
from tierserve.runtime.local.controllers import CLOUD_COST, GPU_SECONDS
from tierserve.runtime.local.store import Store


def _sum_by_service(
    counters: dict[tuple[tuple[str, str], ...], float], tier: str | None = None
) -> dict[tuple[str, str], float]:
    """Counter values summed per (namespace, service); only those of ``tier`` when given."""
    sums: dict[tuple[str, str], float] = {}
    for labels, value in counters.items():
        d = dict(labels)
        if tier is None or d["tier"] == tier:
            key = (d["namespace"], d["service"])
            sums[key] = sums.get(key, 0.0) + value
    return sums


BUDGET_BLOCKED = "budget_blocked"
"""Store counter of the tier planner's budget-blocked scale-outs, per service."""


class CostCollector(Collector):
    """``tierserve_gpu_seconds``, ``tierserve_cloud_*``, ``tierserve_replicas`` and
    ``tierserve_budget_blocked_total``."""

    def __init__(
        self, store: Store, replicas: Callable[[], list[Replica]], tiers: Callable[[Replica], str]
    ) -> None:
        self.store, self.replicas, self.tiers = store, replicas, tiers

    def collect(self) -> Any:
        gpu = CounterMetricFamily(
            "tierserve_gpu_seconds",
            "GPU-seconds used by replicas",
            labels=["namespace", "service", "tier", "node"],
        )
        cloud = CounterMetricFamily(
            "tierserve_cloud_gpu_seconds",
            "GPU-seconds billed on virtual (cloud) nodes",
            labels=["namespace", "service"],
        )
        cost = CounterMetricFamily(
            "tierserve_cloud_cost", "Cost of cloud GPU-seconds", labels=["namespace", "service"]
        )
        gpu_seconds = self.store.counters(GPU_SECONDS)
        for labels, value in gpu_seconds.items():
            d = dict(labels)
            gpu.add_metric([d["namespace"], d["service"], d["tier"], d["node"]], value)
        for key, value in _sum_by_service(gpu_seconds, tier="cloud").items():
            cloud.add_metric(list(key), value)
        for key, value in _sum_by_service(self.store.counters(CLOUD_COST)).items():
            cost.add_metric(list(key), value)
        replicas = GaugeMetricFamily(
            "tierserve_replicas",
            "Replicas by phase",
            labels=["namespace", "service", "node", "tier", "phase"],
        )
        counts: dict[tuple[str, str, str, str, str], int] = {}
        for r in self.replicas():
            key5 = (r.namespace, r.spec.service, r.node_name or "", self.tiers(r), r.phase.value)
            counts[key5] = counts.get(key5, 0) + 1
        for key5, n in counts.items():
            replicas.add_metric(list(key5), n)
        blocked = CounterMetricFamily(
            "tierserve_budget_blocked",
            "Scale-outs the tier planner's cloud budget held back",
            labels=["namespace", "service"],
        )
        for labels, value in self.store.counters(BUDGET_BLOCKED).items():
            d = dict(labels)
            blocked.add_metric([d["namespace"], d["service"]], value)
        return [gpu, cloud, cost, replicas, blocked]


def cost_summary(store: Store) -> dict[str, Any]:
    """GPU-seconds per service and tier, and the cloud cost per service."""
    services: dict[str, dict[str, Any]] = {}
    for labels, value in store.counters(GPU_SECONDS).items():
        d = dict(labels)
        entry = services.setdefault(
            f"{d['namespace']}/{d['service']}", {"gpuSeconds": {}, "cloudCost": 0.0}
        )
        entry["gpuSeconds"][d["tier"]] = entry["gpuSeconds"].get(d["tier"], 0.0) + value
    for labels, value in store.counters(CLOUD_COST).items():
        d = dict(labels)
        entry = services.setdefault(
            f"{d['namespace']}/{d['service']}", {"gpuSeconds": {}, "cloudCost": 0.0}
        )
        entry["cloudCost"] += value
    return {"services": services}
