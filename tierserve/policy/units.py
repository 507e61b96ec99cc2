"""ResourcePolicy units: which nodes a unit holds and how many of the policy's pods it has.

A unit's nodes are those matching its ``nodeSelector``; ``eci``/``acs`` units hold only
virtual nodes (and tolerate the virtual-kubelet taint implicitly, as ACK's scheduler does
internally), ``ecs``/``elastic`` units only ordinary ones.

A pod is *in* unit ``i`` (for ``max``/``maxResources``) when it is selected by the
policy (same namespace, selector matches) and:

* the unit sets ``podLabels``/``podAnnotations``: it carries all of them (ACK: "only pods
  with these key-value pairs are counted"); ACK's
  ``k8s.aliyun.com/resource-policy-wait-for-ecs-scaling`` label is a switch, neither put
  on pods nor counted;
* otherwise: its recorded unit is ``i``, or, with none recorded, its node is in unit
  ``i`` (the first unit holding the node, when units overlap).

A pod records its unit by the unit's *identity* (:func:`unit_id`: its resource and
``nodeSelector``, e.g. ``ecs:alibabacloud.com/nodepool-id=np-idc`` or ``eci``), in the
``scheduling.tierserve.io/unit`` annotation that placement puts on it, so reordering
or inserting units under running pods still counts each pod in the unit it is in
(:func:`home_unit`). A pod whose recorded unit no longer exists counts by its node; the
older index form (``"0"``, kept in ``status.unit``) is still read.

Then ``ignoreTerminatingPod`` (default true) leaves Terminating pods out,
``ignorePreviousPod`` leaves out pods created before the policy
(``metadata.creationTimestamp``), Failed pods never count, and ``matchLabelKeys`` counts
only the pods whose values for those keys equal the incoming pod's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tierserve.model.node import VIRTUAL_KUBELET_TAINT
from tierserve.model.replica import Phase, Replica
from tierserve.model.resourcepolicy import ResourcePolicy, Unit
from tierserve.model.resources import PODS, Toleration, matches
from tierserve.policy.snapshot import PodKey, Snapshot, pod_key

WAIT_FOR_ECS_SCALING = "k8s.aliyun.com/resource-policy-wait-for-ecs-scaling"
"""ACK's ``podLabels`` switch: wait in this unit (for node-pool scaling) before the next."""

VIRTUAL_TOLERATION = Toleration(key=VIRTUAL_KUBELET_TAINT.key, operator="Exists")
"""What an ``eci``/``acs`` unit adds to the pod's tolerations while placing it there."""

UNIT_ANNOTATION = "scheduling.tierserve.io/unit"
"""The identity of the ResourcePolicy unit a pod was placed in (:func:`unit_id`)."""

Group = tuple[tuple[str, str], ...]
"""``matchLabelKeys`` values of the incoming pod, e.g. ``(("pod-template-hash", "abc"),)``."""


def selects(policy: ResourcePolicy, pod: Replica) -> bool:
    """The policy applies to the pod: same namespace, selector labels all present."""
    return policy.namespace == pod.metadata.namespace and matches(
        policy.spec.selector, pod.metadata.labels
    )


def unit_nodes(snapshot: Snapshot, unit: Unit) -> frozenset[str]:
    return snapshot.nodes_matching(unit.node_selector, virtual=unit.virtual)


def unit_tolerations(unit: Unit, pod: Replica) -> tuple[Toleration, ...]:
    """The pod's tolerations, plus the virtual-kubelet one for an eci/acs unit."""
    own = tuple(pod.spec.tolerations)
    return (*own, VIRTUAL_TOLERATION) if unit.virtual else own


def applied_labels(unit: Unit) -> dict[str, str]:
    """The ``podLabels`` the runtime puts on a pod placed in the unit."""
    return {k: v for k, v in unit.pod_labels.items() if k != WAIT_FOR_ECS_SCALING}


def waits_for_scaling(unit: Unit) -> bool:
    return unit.pod_labels.get(WAIT_FOR_ECS_SCALING) == "true"


def created_s(policy: ResourcePolicy) -> float | None:
    """The policy's ``metadata.creationTimestamp`` (RFC 3339) in Unix seconds, if set."""
    stamp = policy.metadata.creation_timestamp
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("z", "Z")).timestamp()


@dataclass(frozen=True)
class UnitUsage:
    """What unit ``unit`` of a policy holds, for one ``matchLabelKeys`` group."""

    count: int
    """Pods counted toward ``max``."""
    used: Mapping[str, int]
    """Their summed requests (milli-units), counted toward ``maxResources``."""
    terminating: int
    """Terminating pods of the policy in the unit (whether counted or not)."""
    counted: frozenset[PodKey]

    def without(self, pod: Replica | None) -> UnitUsage:
        """The usage with ``pod`` (the one being placed) left out."""
        if pod is None or pod_key(pod) not in self.counted:
            return self
        used = dict(self.used)
        for resource, amount in pod.spec.requests.items():
            used[resource] = used.get(resource, 0) - amount
        return UnitUsage(self.count - 1, used, self.terminating, self.counted - {pod_key(pod)})


def policy_members(snapshot: Snapshot, policy: ResourcePolicy) -> tuple[Replica, ...]:
    """The snapshot's pods the policy selects (memoised per snapshot)."""
    memo = snapshot.memo()
    key = ("members", id(policy))
    hit = memo.get(key)
    if hit is None or hit[0] is not policy:
        found = snapshot.pods_labelled(policy.namespace, policy.spec.selector)
        hit = (policy, found)
        memo[key] = hit
    members: tuple[Replica, ...] = hit[1]
    return members


def _unit_key(unit: Unit) -> str:
    selector = ",".join(f"{k}={v}" for k, v in sorted(unit.node_selector.items()))
    return f"{unit.resource}:{selector}" if selector else unit.resource


_IDS: dict[int, tuple[Sequence[Unit], tuple[str, ...]]] = {}
"""unit_ids per units list (by identity; policies are immutable once read), bounded."""


def unit_ids(units: Sequence[Unit]) -> tuple[str, ...]:
    """Each unit's identity, in order: what it holds (resource and ``nodeSelector``), not
    where it stands, so it survives a reorder; a unit repeating an earlier one's gets
    ``#2``, ``#3``... (rare: the later one can only take what the first leaves)."""
    hit = _IDS.get(id(units))
    if hit is not None and hit[0] is units:
        return hit[1]
    if len(_IDS) > 4096:
        _IDS.clear()
    ids = _compute_ids(units)
    _IDS[id(units)] = (units, ids)
    return ids


def _compute_ids(units: Sequence[Unit]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out = []
    for unit in units:
        key = _unit_key(unit)
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return tuple(out)


def unit_id(units: Sequence[Unit], index: int) -> str:
    """The identity of ``units[index]`` (see :func:`unit_ids`)."""
    return unit_ids(units)[index]


def recorded_unit(policy: ResourcePolicy, pod: Replica) -> int | None:
    """The index, in the policy as it is now, of the unit the pod recorded at placement;
    None when it recorded none or its unit is gone."""
    recorded = pod.metadata.annotations.get(UNIT_ANNOTATION)
    if recorded is None or recorded.isdigit():
        return pod.status.unit  # none recorded, or the older index form
    ids = unit_ids(policy.spec.units)
    return ids.index(recorded) if recorded in ids else None


def home_unit(snapshot: Snapshot, policy: ResourcePolicy, pod: Replica) -> int | None:
    """The unit ``pod`` is in now: the one it recorded, else the first holding its node."""
    found = recorded_unit(policy, pod)
    if found is not None:
        return found
    node = pod.status.node_name
    if node is None:
        return None
    for index, unit in enumerate(policy.spec.units):
        if node in unit_nodes(snapshot, unit):
            return index
    return None


def _in_unit(
    snapshot: Snapshot, policy: ResourcePolicy, index: int, unit: Unit, pod: Replica
) -> bool:
    labels = applied_labels(unit)
    if labels or unit.pod_annotations:
        return matches(labels, pod.metadata.labels) and matches(
            unit.pod_annotations, pod.metadata.annotations
        )
    return home_unit(snapshot, policy, pod) == index


def unit_usage(snapshot: Snapshot, policy: ResourcePolicy, index: int, group: Group) -> UnitUsage:
    """Pods and requests of the policy in unit ``index`` for ``group`` (memoised)."""
    memo = snapshot.memo()
    key = ("usage", id(policy), index, group)
    hit = memo.get(key)
    if hit is not None and hit[0] is policy:
        usage: UnitUsage = hit[1]
        return usage
    spec = policy.spec
    unit = spec.units[index]
    since = created_s(policy) if spec.ignore_previous_pod else None
    count = terminating = 0
    used: dict[str, int] = {}
    counted: set[PodKey] = set()
    for pod in policy_members(snapshot, policy):
        if pod.status.phase == Phase.FAILED:
            continue
        if group and any(pod.metadata.labels.get(k) != v for k, v in group):
            continue
        if not _in_unit(snapshot, policy, index, unit, pod):
            continue
        if pod.terminating:
            terminating += 1
            if spec.ignore_terminating_pod:
                continue
        if since is not None and pod.status.created_s < since:
            continue
        count += 1
        counted.add(pod_key(pod))
        for resource, amount in pod.spec.requests.items():
            if resource != PODS:
                used[resource] = used.get(resource, 0) + amount
    usage = UnitUsage(count, used, terminating, frozenset(counted))
    memo[key] = (policy, usage)
    return usage


__all__ = [
    "UNIT_ANNOTATION",
    "VIRTUAL_TOLERATION",
    "WAIT_FOR_ECS_SCALING",
    "Group",
    "UnitUsage",
    "applied_labels",
    "created_s",
    "home_unit",
    "policy_members",
    "recorded_unit",
    "selects",
    "unit_id",
    "unit_ids",
    "unit_nodes",
    "unit_tolerations",
    "unit_usage",
    "waits_for_scaling",
]
