"""Cloud-first scale-in on Kubernetes: ``controller.kubernetes.io/pod-deletion-cost``.

A ReplicaSet scaling down deletes the pods with the lowest deletion cost first (among pods
it otherwise ranks equal: all assigned, same phase and readiness). This controller keeps
the annotation on every pod a ResourcePolicy selects, with the value from the pure
:func:`~tierserve.policy.scalein.deletion_cost`, so the last unit's pods (cloud) go first.

Decide (pure): :func:`desired_costs` maps the cache to ``{pod: cost}``; :func:`patches`
keeps only the pods whose annotation differs. Apply: :class:`DeletionCostController`
patches them, once per change of the cache (debounced).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from tierserve.errors import NotFoundError, TierserveError
from tierserve.model.replica import Replica
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.policy.scalein import DELETION_COST_ANNOTATION, deletion_cost
from tierserve.policy.snapshot import PodKey
from tierserve.policy.units import selects
from tierserve.runtime.kube.cache import ClusterCache
from tierserve.runtime.kube.client import MERGE_PATCH, Api

log = logging.getLogger(__name__)


def desired_costs(
    pods: Mapping[PodKey, Replica],
    policies: tuple[ResourcePolicy, ...],
    virtual_nodes: frozenset[str],
) -> dict[PodKey, int]:
    """Deletion cost per pod selected by a policy (costs ranked within each policy)."""
    costs: dict[PodKey, int] = {}
    for policy in policies:
        mine = [p for p in pods.values() if selects(policy, p)]
        for name, cost in deletion_cost(mine, virtual_nodes).items():
            costs[(policy.namespace, name)] = cost
    return costs


def patches(pods: Mapping[PodKey, Replica], costs: Mapping[PodKey, int]) -> dict[PodKey, str]:
    """The annotation values to write: only where the pod's current one differs."""
    out: dict[PodKey, str] = {}
    for key, cost in costs.items():
        pod = pods.get(key)
        if pod is not None and pod.metadata.annotations.get(DELETION_COST_ANNOTATION) != str(cost):
            out[key] = str(cost)
    return out


class DeletionCostController:
    """Reconcile deletion costs whenever the cache changes (at most every ``debounce_s``)."""

    def __init__(self, cache: ClusterCache, kube: Api, debounce_s: float = 0.2) -> None:
        self.cache = cache
        self.kube = kube
        self.debounce_s = debounce_s
        self.patched = 0

    async def reconcile(self) -> int:
        cache = self.cache
        wanted = patches(
            cache.pods, desired_costs(cache.pods, cache.policies(), cache.virtual_nodes())
        )
        for (namespace, name), value in wanted.items():
            body = {"metadata": {"annotations": {DELETION_COST_ANNOTATION: value}}}
            path = f"/api/v1/namespaces/{namespace}/pods/{name}"
            try:
                await self.kube.request("PATCH", path, body, content_type=MERGE_PATCH)
            except NotFoundError:
                continue
            except TierserveError as exc:
                log.warning("deletion cost for %s/%s: %s", namespace, name, exc)
                continue
            self.patched += 1
            log.info("pod %s/%s: %s=%s", namespace, name, DELETION_COST_ANNOTATION, value)
        return len(wanted)

    async def run(self) -> None:
        changed = self.cache.changed()
        while True:
            await changed.wait()
            await asyncio.sleep(self.debounce_s)
            changed.clear()
            await self.reconcile()


__all__ = ["DeletionCostController", "desired_costs", "patches"]
