"""What a pod needs so its ResourcePolicy applies: tierserve's scheduler, and the
virtual-kubelet toleration where the policy can place it on a virtual node.

On ACK the scheduler itself reads ResourcePolicies, so users write neither a
``schedulerName`` nor a toleration: the seed's InferenceService has none. On other
clusters tierserve's policies are enforced by a second kube-scheduler profile (with the
extender), so a pod a policy selects must name that profile, and a pod whose policy has
an ``eci``/``acs`` unit must tolerate the virtual-kubelet taint (kube-scheduler's own
TaintToleration filter runs before the extender). The admission webhook applies this
decision to every pod as it is created, so ACK's manifests work as written.

Pure: :func:`pod_defaults` maps the pod's namespace, labels, scheduler and tolerations
and the policies to what to set, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tierserve.model.node import VIRTUAL_KUBELET_TAINT
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.model.resources import Toleration, matches
from tierserve.policy.units import VIRTUAL_TOLERATION

DEFAULT_SCHEDULER = "default-scheduler"


@dataclass(frozen=True)
class PodDefaults:
    """What to set on a pod a policy selects (nothing when both are already right)."""

    policy: str
    scheduler_name: str | None = None
    """Set ``spec.schedulerName`` to this (None: leave it)."""
    toleration: Toleration | None = None
    """Add this toleration (None: the pod already tolerates the taint, or needs not)."""
    reason: str = ""

    @property
    def changes(self) -> bool:
        return self.scheduler_name is not None or self.toleration is not None


def pod_defaults(
    namespace: str,
    labels: Mapping[str, str],
    scheduler_name: str | None,
    tolerations: Sequence[Toleration],
    policies: Iterable[ResourcePolicy],
    ours: str,
) -> PodDefaults | None:
    """The defaults for a new pod, or None when no policy selects it (or two do: the
    extender refuses such a pod, with the reason, and the webhook leaves it alone).

    A pod that names another scheduler than the default one keeps it: the user chose.
    """
    selecting = [
        p for p in policies if p.namespace == namespace and matches(p.spec.selector, labels)
    ]
    if len(selecting) != 1:
        return None
    policy = selecting[0]
    said: list[str] = []
    scheduler = None
    if scheduler_name in (None, "", DEFAULT_SCHEDULER):
        scheduler = ours
        said.append(f"schedulerName {ours}")
    toleration = None
    needs = any(u.virtual for u in policy.spec.units)
    if needs and not any(t.tolerates(VIRTUAL_KUBELET_TAINT) for t in tolerations):
        toleration = VIRTUAL_TOLERATION.model_copy(update={"effect": VIRTUAL_KUBELET_TAINT.effect})
        said.append(f"a toleration of {VIRTUAL_KUBELET_TAINT.key}")
    reason = (
        f"ResourcePolicy {policy.name} selects this pod: set " + " and ".join(said)
        if said
        else f"ResourcePolicy {policy.name} selects this pod; nothing to set"
    )
    return PodDefaults(policy.name, scheduler, toleration, reason)


__all__ = ["DEFAULT_SCHEDULER", "PodDefaults", "pod_defaults"]
