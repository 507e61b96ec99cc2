"""Why a node or a unit was not chosen: reasons as typed data.

Three families, rendered by the CLI, events and the simulator alike:

* **node reasons** (:data:`NodeReason`): why one node cannot take the pod now
  (Kubernetes' ``InsufficientResource``, untolerated taint, ...);
* **unit reasons** (:data:`UnitReason`): why a ResourcePolicy unit was passed over or is
  being waited on (``ExceedMax``, ``LackResource``, ``WaitingForTimeout``, ...);
* **policy reasons** (:data:`PolicyReason`): about the pod and its policies as a whole
  (two policies match it, a ``matchLabelKeys`` label is missing, no preemption yet).

Every reason is a frozen dataclass with a ``message()`` that renders it in one line.
Amounts are integer milli-units, like everywhere in tierserve (1 GPU = 1000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from tierserve.model.resources import format_amount

# --- node reasons ----------------------------------------------------------------------


@dataclass(frozen=True)
class InsufficientResource:
    """The node has ``free`` of ``resource`` left and the pod asks for ``requested``."""

    resource: str
    requested: int
    free: int

    def message(self) -> str:
        fmt = format_amount
        return (
            f"Insufficient {self.resource}: requested {fmt(self.resource, self.requested)}, "
            f"free {fmt(self.resource, self.free)}"
        )


@dataclass(frozen=True)
class UntoleratedTaint:
    """A NoSchedule/NoExecute taint the pod does not tolerate."""

    key: str
    value: str
    effect: str

    def message(self) -> str:
        return f"untolerated taint {self.key}={self.value}:{self.effect}"


@dataclass(frozen=True)
class NodeSelectorMismatch:
    """The pod's own ``nodeSelector`` wants ``key=wanted``; the node has ``actual``."""

    key: str
    wanted: str
    actual: str | None

    def message(self) -> str:
        has = "no such label" if self.actual is None else f"{self.key}={self.actual}"
        return f"node selector {self.key}={self.wanted} does not match ({has})"


@dataclass(frozen=True)
class NodeUnschedulable:
    """The node is cordoned (``spec.unschedulable``)."""

    def message(self) -> str:
        return "node is unschedulable (cordoned)"


@dataclass(frozen=True)
class NodeNotFound:
    """A candidate the caller named is not in the snapshot."""

    def message(self) -> str:
        return "node is not in the snapshot"


@dataclass(frozen=True)
class OutsideUnit:
    """The node is not in ``unit`` of ``policy``, the unit the pod goes to now.

    ``unit`` is ``None`` when the pod can go to no unit at present (see the decision).
    """

    policy: str
    unit: int | None

    def message(self) -> str:
        if self.unit is None:
            return f"ResourcePolicy {self.policy}: no unit can take the pod now"
        return f"not a node of unit {self.unit} of ResourcePolicy {self.policy}"


@dataclass(frozen=True)
class PodRejected:
    """The pod is rejected as a whole (see ``reason``), so no node is allowed."""

    reason: PolicyReason

    def message(self) -> str:
        return self.reason.message()


NodeReason = (
    InsufficientResource
    | UntoleratedTaint
    | NodeSelectorMismatch
    | NodeUnschedulable
    | NodeNotFound
    | OutsideUnit
    | PodRejected
)


@dataclass(frozen=True)
class NodeCount:
    """``nodes`` nodes were rejected for a reason like ``reason`` (the one with most free)."""

    reason: NodeReason
    nodes: int


# --- unit reasons ----------------------------------------------------------------------


@dataclass(frozen=True)
class LackResource:
    """No node of ``unit`` can take the pod now; ``nodes`` is how many the unit has.

    ``why`` groups the nodes by reason (e.g. 3 x Insufficient nvidia.com/gpu).
    ``filtered`` counts the unit's nodes that were not candidates at all: kube-scheduler's
    own filters ruled them out (a full node, most often) before asking the extender.
    """

    unit: int
    nodes: int
    why: tuple[NodeCount, ...] = ()
    filtered: int = 0

    def message(self) -> str:
        if not self.nodes and self.filtered:
            nodes = "node was" if self.filtered == 1 else "nodes were"
            return (
                f"unit {self.unit}: its {self.filtered} {nodes} ruled out by "
                "kube-scheduler's own filters (no room, taint or selector)"
            )
        if not self.nodes:
            return f"unit {self.unit}: no nodes"
        parts = ", ".join(f"{c.nodes} x {c.reason.message()}" for c in self.why)
        return f"unit {self.unit}: 0/{self.nodes} nodes available: {parts}"


@dataclass(frozen=True)
class ExceedMax:
    """``unit`` already holds ``count`` pods of the policy (of this group); ``max`` allowed."""

    unit: int
    max: int
    count: int
    group: tuple[tuple[str, str], ...] = ()

    def message(self) -> str:
        group = " ".join(f"{k}={v}" for k, v in self.group)
        where = f" (group {group})" if group else ""
        return f"unit {self.unit}: {self.count} pods of max {self.max}{where}"


@dataclass(frozen=True)
class ExceedMaxResources:
    """``used`` + the pod's ``requested`` of ``resource`` would pass ``limit`` in ``unit``."""

    unit: int
    resource: str
    limit: int
    used: int
    requested: int

    def message(self) -> str:
        fmt = format_amount
        return (
            f"unit {self.unit}: {self.resource} used {fmt(self.resource, self.used)} + requested "
            f"{fmt(self.resource, self.requested)} > maxResources "
            f"{fmt(self.resource, self.limit)}"
        )


@dataclass(frozen=True)
class WaitingForTimeout:
    """``TimeoutOrExceedMax``: the pod waits in ``unit`` until ``until_s`` (its creation
    plus the timeout).

    The message names the deadline, not the seconds left: kube-scheduler writes it into
    the pod's PodScheduled condition, and a message that changed on every attempt would
    rewrite the pod, which requeues it at once (a hot retry loop for the whole wait).
    """

    unit: int
    timeout_s: float
    until_s: float

    def message(self) -> str:
        return (
            f"unit {self.unit}: waiting for capacity until its {self.timeout_s:g}s timeout "
            f"ends at {_instant(self.until_s)}, then trying the next unit"
        )


def _instant(t: float) -> str:
    """A deadline as RFC 3339 UTC for wall-clock seconds, else (simulated time from 0) as
    seconds."""
    if t < 1e9:
        return f"t={t:g}s"
    stamp = datetime.fromtimestamp(math.ceil(t), tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WaitingInUnit:
    """``ExceedMax``: the unit is under its max, so the pod waits there for capacity."""

    unit: int

    def message(self) -> str:
        return f"unit {self.unit}: under its max, waiting for capacity (whenTryNextUnits ExceedMax)"


@dataclass(frozen=True)
class TerminatingPods:
    """``LackResourceAndNoTerminating``: ``count`` pods of the policy are terminating in
    ``unit``; the pod waits for them rather than spilling into the next unit."""

    unit: int
    count: int

    def message(self) -> str:
        return f"unit {self.unit}: {self.count} pods terminating, waiting before the next unit"


@dataclass(frozen=True)
class NoWaitInUnit:
    """``TimeoutOrExceedMax`` (or ``ExceedMax``) waits only in a unit with ``max``,
    ``maxResources`` or ACK's wait-for-scaling label; ``unit`` has none, so the pod went
    on to the next unit at once (as in ACK)."""

    unit: int
    policy: str

    def message(self) -> str:
        return (
            f"unit {self.unit}: {self.policy} waits only in a unit with max, maxResources or "
            "the k8s.aliyun.com/resource-policy-wait-for-ecs-scaling label; this one has "
            "none, so the next unit was tried at once"
        )


UnitReason = (
    LackResource
    | ExceedMax
    | ExceedMaxResources
    | WaitingForTimeout
    | WaitingInUnit
    | TerminatingPods
    | NoWaitInUnit
)


# --- policy reasons --------------------------------------------------------------------


@dataclass(frozen=True)
class ConflictingPolicies:
    """More than one ResourcePolicy of the pod's namespace selects it."""

    policies: tuple[str, ...]

    def message(self) -> str:
        return f"pod is selected by more than one ResourcePolicy: {', '.join(self.policies)}"


@dataclass(frozen=True)
class MissingMatchLabel:
    """The policy groups pods by ``matchLabelKeys`` and the pod lacks ``key``."""

    policy: str
    key: str

    def message(self) -> str:
        return f"ResourcePolicy {self.policy} groups by label {self.key!r}, which the pod lacks"


@dataclass(frozen=True)
class NeverFits:
    """No node of any unit (or of the cluster, without a policy) could hold the pod even
    empty: ``largest`` is the most of ``resource`` any such node has allocatable."""

    resource: str
    requested: int
    largest: int

    def message(self) -> str:
        fmt = format_amount
        return (
            f"requests {fmt(self.resource, self.requested)} {self.resource} but no eligible node "
            f"has more than {fmt(self.resource, self.largest)} allocatable"
        )


@dataclass(frozen=True)
class NoEligibleNodes:
    """No node of any unit passes the static checks (selector, taints, virtual or not)."""

    def message(self) -> str:
        return "no node of any unit matches the pod's node selector and tolerations"


@dataclass(frozen=True)
class NoPreemption:
    """``preemptPolicy`` is set (recorded) but tierserve does not preempt yet; said only
    when the user set it, after the reasons that matter."""

    preempt_policy: str

    def message(self) -> str:
        return f"preemptPolicy {self.preempt_policy} recorded; tierserve does not preempt yet"


PolicyReason = ConflictingPolicies | MissingMatchLabel | NeverFits | NoEligibleNodes | NoPreemption

Reason = NodeReason | UnitReason | PolicyReason


__all__ = [
    "ConflictingPolicies",
    "ExceedMax",
    "ExceedMaxResources",
    "InsufficientResource",
    "LackResource",
    "MissingMatchLabel",
    "NeverFits",
    "NoEligibleNodes",
    "NoPreemption",
    "NoWaitInUnit",
    "NodeCount",
    "NodeNotFound",
    "NodeReason",
    "NodeSelectorMismatch",
    "NodeUnschedulable",
    "OutsideUnit",
    "PodRejected",
    "PolicyReason",
    "Reason",
    "TerminatingPods",
    "UnitReason",
    "UntoleratedTaint",
    "WaitingForTimeout",
    "WaitingInUnit",
]
