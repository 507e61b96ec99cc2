"""What a service's replicas should become: the ReplicaSet/Deployment controller, pure.

``decide(services, replicas, nodes)`` compares what each service asks for with the
replicas that exist and returns actions, each with its reason:

- a replica of a deleted service, or on a node that is gone, is terminated
  (``ServiceDeleted``, ``NodeDeleted``); one whose deletion was asked for
  (``metadata.deletionTimestamp``, ``kubectl delete pod``) is terminated (``Deleted``)
  and, like a Deployment's pod, replaced;
- a Failed replica is removed and replaced (``ReplicaFailed``);
- each service is brought to ``spec.replicas`` on its current template by
  :func:`tierserve.policy.rollout.plan` (scale-out, scale-in in the ResourcePolicy's
  reverse-unit order, RollingUpdate with maxSurge 1 / maxUnavailable 0).

Names are not chosen here (the body picks them: random suffixes locally, a counter in
the simulator); a :class:`Create` carries the template hash its replica gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tierserve.model import InferenceService, Node, Phase, Replica
from tierserve.policy.naming import template_hash
from tierserve.policy.rollout import ROLLING_UPDATE, TEMPLATE_HASH_LABEL, plan
from tierserve.policy.scalein import virtual_node_names

ServiceKey = tuple[str, str]
"""(namespace, name) of an InferenceService."""

SERVICE_DELETED = "ServiceDeleted"
NODE_DELETED = "NodeDeleted"
DELETED = "Deleted"
REPLICA_FAILED = "ReplicaFailed"


@dataclass(frozen=True)
class Create:
    """Create one Pending replica of ``service`` on template ``template``."""

    service: InferenceService
    template: str


@dataclass(frozen=True)
class Terminate:
    """Mark ``replica`` Terminating (it leaves routing, drains, then its process stops).

    ``service_event``: the ``SuccessfulDelete`` message for the service's events when the
    service controller chose it (scale-in, rolling update); None for clean-up.
    """

    replica: Replica
    reason: str
    service_event: str | None = None


@dataclass(frozen=True)
class Replace:
    """Remove the Failed ``replica`` (its service creates a new one in the same pass)."""

    replica: Replica
    service: InferenceService
    message: str


Action = Create | Terminate | Replace


def service_key(replica: Replica) -> ServiceKey:
    return (replica.namespace, replica.spec.service)


def _cleanup(
    replica: Replica,
    services: Mapping[ServiceKey, InferenceService],
    nodes: Mapping[str, Node],
) -> Action | None:
    """Why ``replica`` goes regardless of its service's size, or None."""
    service = services.get(service_key(replica))
    if service is None:
        return None if replica.terminating else Terminate(replica, SERVICE_DELETED)
    if replica.terminating:
        return None
    node = replica.status.node_name
    if node is not None and node not in nodes:
        return Terminate(replica, NODE_DELETED)
    if replica.metadata.deletion_timestamp is not None:
        return Terminate(replica, DELETED)
    if replica.phase == Phase.FAILED:
        return Replace(
            replica,
            service,
            f"Replica {replica.name} failed: {replica.status.message}; replacing it",
        )
    return None


def decide(
    services: Mapping[ServiceKey, InferenceService],
    replicas: Sequence[Replica],
    nodes: Mapping[str, Node],
) -> list[Action]:
    """Every action that brings ``replicas`` to what ``services`` ask for, in order:
    clean-up first, then per service its creations and terminations."""
    actions: list[Action] = []
    by_service: dict[ServiceKey, list[Replica]] = {}
    for replica in replicas:
        action = _cleanup(replica, services, nodes)
        if action is not None:
            actions.append(action)
        elif not replica.terminating:
            by_service.setdefault(service_key(replica), []).append(replica)
    virtual = virtual_node_names(nodes.values())
    for key, service in services.items():
        actions.extend(scale(service, by_service.get(key, []), virtual))
    return actions


def scale(
    service: InferenceService, live: Iterable[Replica], virtual: frozenset[str]
) -> list[Action]:
    """Create or terminate replicas of ``service`` (its live, non-terminating ones): to
    ``spec.replicas``, onto its current template one at a time, and the replicas it
    moves back to the IDC (``policy.rebalance``) replaced before they go."""
    template = template_hash(service)
    moving = moving_replicas(service)
    decision = plan(list(live), service.spec.replicas, template, virtual, retiring=moving)
    out: list[Action] = [Create(service, template) for _ in range(decision.create)]
    for victim in decision.terminate:
        if victim.name in moving:
            reason, suffix = MOVED, " (moved to the IDC: its replacement is Ready)"
        elif decision.reason == ROLLING_UPDATE:
            reason, suffix = decision.reason, " (rolling update)"
        else:
            reason, suffix = decision.reason, ""
        out.append(Terminate(victim, reason, f"Deleted replica: {victim.name}{suffix}"))
    return out


MOVE_ANNOTATION = "tierserve.io/move-to-idc"
"""On a service: the replicas (comma-separated names) the autoscaler moves from the cloud
back to the IDC; each is replaced first and goes once its replacement is Ready."""
MOVED = "MovedToIdc"


def moving_replicas(service: InferenceService) -> frozenset[str]:
    names = service.metadata.annotations.get(MOVE_ANNOTATION, "")
    return frozenset(n for n in names.split(",") if n)


def new_replica(service: InferenceService, name: str, template: str, now: float) -> Replica:
    """The Pending replica a :class:`Create` makes, named ``name`` by the body."""
    replica: Replica = Replica.new(
        name,
        service.namespace,
        metadata={
            "labels": {**service.replica_labels(), TEMPLATE_HASH_LABEL: template},
            "annotations": dict(service.spec.annotations),
        },
        spec={
            "service": service.name,
            "requests": {k: f"{v}m" for k, v in service.requests().items()},
            "tolerations": [t.to_dict() for t in service.spec.tolerations],
            "nodeSelector": dict(service.spec.node_selector),
        },
        status={"phase": "Pending", "createdS": now},
    )
    return replica
