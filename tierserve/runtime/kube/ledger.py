"""The replica and cost ledger on Kubernetes, under the control plane's metric names.

On one machine the control plane keeps ``tierserve_replicas``,
``tierserve_gpu_seconds_total``, ``tierserve_cloud_gpu_seconds_total`` and
``tierserve_cloud_cost_total`` (docs/metrics.md), which the Grafana overview in
``deploy/`` draws. On a cluster the extender keeps them from its cache: every pod of a
service (``servingName`` / KServe's label, else its owner) on a node, billed with the
same pure :func:`~tierserve.policy.billing.bill` as locally: from when it was bound
(its ``PodScheduled`` time) until it is gone, for the GPUs it requests, on a virtual node
at the node's ``tierserve.io/price-per-gpu-hour``. The interval since the last look is
billed at each look (every ``period_s`` and at every scrape), so a pod that goes away is
billed up to the last look before it went.

Counters start at zero when the process starts (Prometheus' ``rate``/``increase``
handle the reset); with leader election only the leader bills and exports them, so two
replicas never count the same GPU-second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tierserve.model.replica import Phase
from tierserve.policy.billing import bill
from tierserve.policy.snapshot import PodKey
from tierserve.runtime.kube.cache import ClusterCache

_LABELS = ("namespace", "service", "tier", "node")


@dataclass(eq=False)
class KubeLedger(Collector):
    """GPU-seconds and cloud cost per (namespace, service, tier, node), from the cache."""

    cache: ClusterCache
    clock: Callable[[], float] = time.time
    leading: asyncio.Event | None = None
    """With leader election: bill and export only while set."""
    gpu_seconds: dict[tuple[str, ...], float] = field(default_factory=dict)
    cloud_cost: dict[tuple[str, ...], float] = field(default_factory=dict)
    _billed: dict[tuple[PodKey, str], float] = field(default_factory=dict)
    """Until when each pod (by key and UID) is billed."""
    _billed_any: bool = False
    """Past the first look (pods bound before it are billed from it, not from binding)."""

    def _active(self) -> bool:
        return self.leading is None or self.leading.is_set()

    def observe(self) -> None:
        """Bill every pod's time since the last look."""
        if not self._active():
            self._billed.clear()  # a standby starts afresh when it leads
            return
        now = self.clock()
        seen = set()
        for key, pod in self.cache.pods.items():
            if pod.status.phase is Phase.FAILED or pod.status.node_name is None:
                continue
            ident = (key, pod.metadata.uid or "")
            seen.add(ident)
            since = self._billed.get(ident)
            if since is None:
                # a new pod: from its binding; at the process's first look, from now (a
                # restarted process must not bill the past twice)
                start = pod.status.scheduled_s
                since = start if start is not None and self._billed_any else now
            charge = bill(
                pod.with_status(billed_until_s=since),
                self.cache.nodes.get(pod.status.node_name),
                now,
            )
            self._billed[ident] = now
            if charge is None:
                continue
            labels = tuple(charge.labels[k] for k in _LABELS)
            self.gpu_seconds[labels] = self.gpu_seconds.get(labels, 0.0) + charge.gpu_seconds
            if charge.cloud:
                self.cloud_cost[labels] = self.cloud_cost.get(labels, 0.0) + charge.cloud_cost
        for ident in set(self._billed) - seen:
            del self._billed[ident]
        self._billed_any = True

    async def run(self, period_s: float = 5.0) -> None:
        while True:
            self.observe()
            await asyncio.sleep(period_s)

    # --- Prometheus ------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: registering must not take the ledger's first look."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        if not self._active():
            return
        self.observe()
        replicas = GaugeMetricFamily(
            "tierserve_replicas",
            "Replicas (pods) of a service by node, tier and phase.",
            labels=["namespace", "service", "node", "tier", "phase"],
        )
        counts: dict[tuple[str, ...], int] = {}
        nodes = self.cache.nodes
        for pod in self.cache.pods.values():
            name = pod.status.node_name
            node = nodes.get(name) if name is not None else None
            tier = node.tier if node is not None else ""  # Pending: no node, no tier
            key = (pod.namespace, pod.spec.service, name or "", tier, pod.status.phase.value)
            counts[key] = counts.get(key, 0) + 1
        for labels, count in sorted(counts.items()):
            replicas.add_metric(list(labels), count)
        yield replicas
        gpu = CounterMetricFamily(
            "tierserve_gpu_seconds",
            "GPU-seconds held by replicas, from binding until gone.",
            labels=list(_LABELS),
        )
        cloud_gpu = CounterMetricFamily(
            "tierserve_cloud_gpu_seconds",
            "GPU-seconds on virtual (cloud) nodes.",
            labels=["namespace", "service"],
        )
        cost = CounterMetricFamily(
            "tierserve_cloud_cost",
            "Cloud GPU-seconds at each virtual node's price per GPU-hour.",
            labels=["namespace", "service"],
        )
        cloud_by_service: dict[tuple[str, str], float] = {}
        cost_by_service: dict[tuple[str, str], float] = {}
        for labels, value in sorted(self.gpu_seconds.items()):
            gpu.add_metric(list(labels), value)
            if labels[2] == "cloud":
                service = (labels[0], labels[1])
                cloud_by_service[service] = cloud_by_service.get(service, 0.0) + value
        for labels, value in self.cloud_cost.items():
            service = (labels[0], labels[1])
            cost_by_service[service] = cost_by_service.get(service, 0.0) + value
        for service, value in sorted(cloud_by_service.items()):
            cloud_gpu.add_metric(list(service), value)
        for service, value in sorted(cost_by_service.items()):
            cost.add_metric(list(service), value)
        yield gpu
        yield cloud_gpu
        yield cost


__all__ = ["KubeLedger"]
