"""When a waiting pod should be looked at again: at its unit timeout, and after its policy
changed.

kube-scheduler retries an unschedulable pod when the cluster changes (a pod or node
event), or after up to five minutes in its unschedulable queue. Two things that make a
waiting pod placeable are invisible to it:

* a ``TimeoutOrExceedMax`` wait ends (the pod may now go on to the next unit): nothing
  changes in the cluster at that instant;
* a ResourcePolicy is edited (a higher ``max``, reordered units): kube-scheduler does not
  watch ResourcePolicies.

A runtime requeues such a pod by touching it (an annotation update is a pod event,
which sends an extender-rejected pod back to kube-scheduler's active queue). This module
decides which pods and when; the wait itself keeps a stable message
(:class:`~tierserve.policy.reasons.WaitingForTimeout`) so the scheduler's own status
updates do not requeue it in a loop.

Pure: :func:`requeues` maps the pods, the policies, the policies as last seen and
``now`` to the touches to make now and the next instant to look again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tierserve.model.replica import Phase, Replica
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.policy.units import selects

REQUEUE_ANNOTATION = "scheduling.tierserve.io/requeue"
"""Set on a waiting pod to have kube-scheduler try it again; the value says why."""

PolicyKey = tuple[str, str]
"""(namespace, name) of a ResourcePolicy."""


@dataclass(frozen=True)
class Requeue:
    """Touch ``namespace/name`` with ``token`` (the annotation's new value)."""

    namespace: str
    name: str
    token: str
    reason: str


@dataclass(frozen=True)
class RequeuePlan:
    touch: tuple[Requeue, ...]
    next_s: float | None
    """The next instant a timeout ends (look again then); None when none is pending."""


def _waiting(pod: Replica) -> bool:
    return pod.status.phase == Phase.PENDING and pod.status.node_name is None


def changed_policies(
    before: Mapping[PolicyKey, ResourcePolicy], after: Iterable[ResourcePolicy]
) -> frozenset[PolicyKey]:
    """The policies whose spec differs from what was seen before (new ones included:
    pods created ahead of their policy wait for it too)."""
    out = set()
    for policy in after:
        key = (policy.namespace, policy.name)
        old = before.get(key)
        if old is None or old.spec != policy.spec:
            out.add(key)
    return frozenset(out)


def timeout_token(deadline_s: float) -> str:
    return f"timeout@{math.ceil(deadline_s)}"


def requeues(
    pods: Iterable[Replica],
    policies: Iterable[ResourcePolicy],
    now_s: float,
    changed: frozenset[PolicyKey] = frozenset(),
) -> RequeuePlan:
    """Which waiting pods to touch now, and when to look again.

    * A pod waiting under a ``TimeoutOrExceedMax`` policy whose timeout (from its
      creation) has ended is touched once (token ``timeout@<deadline>``).
    * Every waiting pod of a policy in ``changed`` is touched (token
      ``policy@<resourceVersion>``), unless it already carries that token.
    """
    touch: list[Requeue] = []
    next_s: float | None = None
    selecting = list(policies)
    for pod in pods:
        if not _waiting(pod):
            continue
        mine = [p for p in selecting if selects(p, pod)]
        if len(mine) != 1:
            continue  # none, or a conflict that never resolves by waiting
        policy = mine[0]
        have = pod.metadata.annotations.get(REQUEUE_ANNOTATION)
        key = (policy.namespace, policy.name)
        if key in changed:
            token = f"policy@{policy.metadata.resource_version or '0'}"
            if have != token:
                touch.append(
                    Requeue(
                        pod.namespace,
                        pod.name,
                        token,
                        f"ResourcePolicy {policy.name} changed: try again under it",
                    )
                )
                continue
        try_next = policy.spec.when_try_next_units
        if try_next.policy != "TimeoutOrExceedMax":
            continue
        deadline = pod.status.created_s + try_next.timeout_s
        token = timeout_token(deadline)
        if have == token:
            continue
        if deadline <= now_s:
            touch.append(
                Requeue(
                    pod.namespace,
                    pod.name,
                    token,
                    f"its {try_next.timeout:s} wait in a unit ended: try the next unit",
                )
            )
        elif next_s is None or deadline < next_s:
            next_s = deadline
    return RequeuePlan(tuple(touch), next_s)


__all__ = [
    "REQUEUE_ANNOTATION",
    "Requeue",
    "RequeuePlan",
    "changed_policies",
    "requeues",
    "timeout_token",
]
