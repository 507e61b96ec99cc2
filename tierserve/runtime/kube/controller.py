"""The pod controllers on Kubernetes: cloud-first scale-in, and requeueing waiting pods.

Cloud-first scale-in: ``controller.kubernetes.io/pod-deletion-cost``.

A ReplicaSet scaling down deletes the pods with the lowest deletion cost first (among pods
it otherwise ranks equal: all assigned, same phase and readiness). This controller keeps
the annotation on every pod a ResourcePolicy selects, with the value from the pure
:func:`~tierserve.policy.scalein.deletion_cost`, so the last unit's pods (cloud) go first.

Decide (pure): :func:`desired_costs` maps the cache to ``{pod: cost}``; :func:`patches`
keeps only the pods whose annotation differs. Apply: :class:`DeletionCostController`
patches them, once per change of the cache (debounced).

Requeue: :class:`RequeueController` touches waiting pods when their ``TimeoutOrExceedMax``
wait ends and when their ResourcePolicy changes (the pure
:func:`~tierserve.policy.requeue.requeues`), so kube-scheduler tries them then instead
of after its five-minute unschedulable flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from tierserve.errors import NotFoundError, TierserveError
from tierserve.model.replica import Replica
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.policy.requeue import (
    REQUEUE_ANNOTATION,
    PolicyKey,
    changed_policies,
    requeues,
)
from tierserve.policy.scalein import DELETION_COST_ANNOTATION, deletion_cost
from tierserve.policy.snapshot import PodKey, Snapshot
from tierserve.policy.units import home_unit, selects
from tierserve.runtime.kube.cache import ClusterCache
from tierserve.runtime.kube.client import MERGE_PATCH, Api

log = logging.getLogger(__name__)


def desired_costs(
    pods: Mapping[PodKey, Replica],
    policies: tuple[ResourcePolicy, ...],
    virtual_nodes: frozenset[str],
    snapshot: Snapshot | None = None,
) -> dict[PodKey, int]:
    """Deletion cost per pod selected by a policy (costs ranked within each policy).

    With ``snapshot``, each pod's unit is the one it is in under the policy as it is now
    (:func:`~tierserve.policy.units.home_unit`: by the unit identity it recorded, so a
    reorder of the units reorders scale-in with them).
    """
    costs: dict[PodKey, int] = {}
    for policy in policies:
        mine = [p for p in pods.values() if selects(policy, p)]
        if snapshot is not None:
            mine = [p.with_status(unit=home_unit(snapshot, policy, p)) for p in mine]
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
            cache.pods,
            desired_costs(cache.pods, cache.policies(), cache.virtual_nodes(), cache.snapshot()),
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

    async def run(self, gate: asyncio.Event | None = None) -> None:
        """Reconcile on every change; with ``gate``, only while it is set (leading)."""
        changed = self.cache.changed()
        while True:
            if gate is not None:
                await gate.wait()
            await changed.wait()
            await asyncio.sleep(self.debounce_s)
            changed.clear()
            await self.reconcile()


class RequeueController:
    """Touch waiting pods when their unit timeout ends or their policy changes.

    The policies seen at start are the baseline (a restart does not requeue every
    waiting pod); each later change of a policy's spec requeues that policy's pods.
    """

    SKEW_S = 0.5
    """Touch this long after a deadline, so the extender (another process, same clock
    source) already sees the timeout ended."""

    def __init__(
        self, cache: ClusterCache, kube: Api, clock: Callable[[], float] = time.time
    ) -> None:
        self.cache = cache
        self.kube = kube
        self.clock = clock
        self.seen: dict[PolicyKey, ResourcePolicy] = {
            (p.namespace, p.name): p for p in cache.policies()
        }
        self.touched = 0
        self._changed = asyncio.Event()
        cache.listeners.append(self._changed.set)

    async def reconcile(self) -> float | None:
        """Touch what is due now; return the next deadline (Unix seconds) or None."""
        policies = self.cache.policies()
        changed = changed_policies(self.seen, policies)
        self.seen = {(p.namespace, p.name): p for p in policies}
        plan = requeues(self.cache.pods.values(), policies, self.clock() - self.SKEW_S, changed)
        for item in plan.touch:
            body = {"metadata": {"annotations": {REQUEUE_ANNOTATION: item.token}}}
            path = f"/api/v1/namespaces/{item.namespace}/pods/{item.name}"
            try:
                await self.kube.request("PATCH", path, body, content_type=MERGE_PATCH)
            except NotFoundError:
                continue
            except TierserveError as exc:
                log.warning("requeue %s/%s: %s", item.namespace, item.name, exc)
                continue
            self.touched += 1
            log.info("requeue pod %s/%s: %s", item.namespace, item.name, item.reason)
        return None if plan.next_s is None else plan.next_s + self.SKEW_S

    async def run(self, debounce_s: float = 0.2, gate: asyncio.Event | None = None) -> None:
        """Touch what is due, then sleep until the next deadline or change; with ``gate``,
        only while it is set (leading)."""
        while True:
            if gate is not None:
                await gate.wait()
            next_s = await self.reconcile()
            wait_s = None if next_s is None else max(0.0, next_s - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait_s)
                await asyncio.sleep(debounce_s)  # a burst of pod events: look once
            self._changed.clear()


__all__ = ["DeletionCostController", "RequeueController", "desired_costs", "patches"]
