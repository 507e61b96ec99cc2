"""Move work back to the IDC: when the IDC frees up while a cloud replica runs.

A cloud replica bills by the second; an IDC GPU is already paid for. When the IDC has
room for one more replica of a service that has a Ready cloud replica, :func:`move`
picks the cloud replica to give back (the first in scale-in order: the newest cloud
one) and the service controller moves it *make before break*
(``policy.replicaset.MOVE_ANNOTATION``): one replacement is created — the ResourcePolicy
places it on the IDC, which has room — and only once it is Ready is the cloud replica
terminated; Terminating, it leaves routing at once and finishes the requests it has
(``policy.drain``), so no request fails. Units, ``max`` and quotas hold because the room
is found with the placement itself (``policy.tiers``).

One move at a time per service, and only while the service is steady (every replica
Ready, at its wanted size): a move never competes with a scale-out or a rolling update.
On by default for the tier planner (``autoscaling.rebalance`` unset), off for the HPA
(Kubernetes' behaviour) unless ``autoscaling: {rebalance: true}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tierserve.model import InferenceService, Node, Replica
from tierserve.policy.planner import Tier
from tierserve.policy.replicaset import MOVE_ANNOTATION, moving_replicas, service_key
from tierserve.policy.scalein import scale_in_order, virtual_node_names


def enabled(service: InferenceService) -> bool:
    spec = service.spec.autoscaling
    return spec is not None and spec.rebalances


def move(
    service: InferenceService,
    replicas: Sequence[Replica],
    nodes: Mapping[str, Node],
    tiers: Sequence[Tier],
) -> Replica | None:
    """The cloud replica of ``service`` to move back to the IDC now, or None."""
    if not enabled(service):
        return None
    idc = next((t for t in tiers if t.price_per_replica_hour == 0), None)
    if idc is None or idc.room < 1:
        return None
    key = (service.namespace, service.name)
    live = [r for r in replicas if service_key(r) == key and not r.terminating]
    if moving_replicas(service) & {r.name for r in live}:
        return None  # a move is under way
    if len(live) != service.spec.replicas or not all(r.ready for r in live):
        return None  # not steady: scaling or rolling
    virtual = virtual_node_names(nodes.values())
    cloud = [r for r in live if r.node_name in virtual]
    if not cloud:
        return None
    return scale_in_order(cloud, virtual)[0]


def moved(service: InferenceService, replica: Replica) -> InferenceService:
    """``service`` asking its service controller to move ``replica`` (the annotation)."""
    meta = service.metadata
    annotations = {**meta.annotations, MOVE_ANNOTATION: replica.name}
    return service.model_copy(
        update={"metadata": meta.model_copy(update={"annotations": annotations})}
    )


def message(replica: Replica) -> str:
    return (
        f"Moving replica {replica.name} from the cloud to the IDC, which has room: a "
        "replacement starts there first; the cloud replica goes once it is Ready"
    )
