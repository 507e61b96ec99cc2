"""A placed replica's way to a running process: binding, cold start, provisioned.

- :func:`schedule` places every Pending replica, oldest first, with the pure
  ResourcePolicy placement (:func:`tierserve.policy.placement.place`), each seeing the
  ones placed before it; a replica that cannot go now gets the reason.
- :func:`bound` is the replica as bound to its node: the unit's labels, the node's tier
  label, ``scheduledS`` and the phase after binding — ``Provisioning`` on a virtual
  node (the cloud's cold start), ``Starting`` on an IDC node (its process starts now).
- :func:`provisioned` says when a Provisioning replica's cold start is over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tierserve.model import Node, Phase, Replica, ResourcePolicy
from tierserve.model.replica import TIER_LABEL
from tierserve.policy.decisions import Placement
from tierserve.policy.placement import bind, place
from tierserve.policy.snapshot import Snapshot


@dataclass(frozen=True)
class Bind:
    """Bind ``replica`` (already updated: labels, node, phase) to ``node``."""

    replica: Replica
    node: Node
    unit: int | None


@dataclass(frozen=True)
class Wait:
    """``replica`` stays Pending: ``message`` says why (event ``FailedScheduling``)."""

    replica: Replica
    message: str


def cold_start_s(node: Node) -> float:
    """How long a replica bound to ``node`` provisions before its process starts."""
    return node.spec.virtual.cold_start_seconds if node.spec.virtual is not None else 0.0


def phase_after_binding(node: Node) -> Phase:
    return Phase.PROVISIONING if node.virtual else Phase.STARTING


def bound(replica: Replica, placement: Placement, node: Node, now: float) -> Replica:
    """``replica`` as placed on ``node``."""
    placed = bind(replica, placement)
    labels = {**placed.metadata.labels, TIER_LABEL: node.tier}
    placed = placed.model_copy(
        update={"metadata": placed.metadata.model_copy(update={"labels": labels})}
    )
    return placed.with_status(
        phase=phase_after_binding(node), scheduled_s=now, reason="", message=""
    )


def pending(replicas: Iterable[Replica]) -> list[Replica]:
    """Replicas waiting for a node, oldest first (the scheduler's queue order)."""
    return sorted(
        (r for r in replicas if r.phase == Phase.PENDING and r.node_name is None),
        key=lambda r: (r.status.created_s, r.name),
    )


def schedule_one(
    replica: Replica,
    snapshot: Snapshot,
    nodes: Mapping[str, Node],
    policies: Sequence[ResourcePolicy],
    now: float,
) -> tuple[Bind | Wait, Snapshot]:
    """Place one Pending replica; the snapshot with it placed (unchanged when it waits)."""
    decision = place(replica, snapshot, policies, now)
    if not isinstance(decision, Placement):
        return Wait(replica, "; ".join(decision.messages()) or "no node fits"), snapshot
    node = nodes[decision.node]
    placed = bound(replica, decision, node, now)
    return Bind(placed, node, decision.unit), snapshot.with_pod(placed)


def provisioned(replica: Replica, node: Node, now: float) -> bool:
    """Whether a Provisioning replica's cold start on ``node`` is over."""
    if replica.phase != Phase.PROVISIONING:
        return False
    scheduled = replica.status.scheduled_s
    return scheduled is not None and now >= scheduled + cold_start_s(node)


def bind_message(replica: Replica, action: Bind) -> str:
    unit = f" (unit {action.unit})" if action.unit is not None else ""
    return f"Successfully assigned {replica.namespace}/{replica.name} to {action.node.name}{unit}"
