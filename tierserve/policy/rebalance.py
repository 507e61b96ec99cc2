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

A body whose replicas are scaled by a controller it does not own (Kubernetes: a
Deployment's ReplicaSet, which has no "replace this pod" verb but scales down by
deletion cost) moves in steps instead: scale to N + 1 (:class:`Move` records the pod and
N), and once all N + 1 are Ready and the moved pod is the first to go, back to N —
:func:`next_step` says which step a period is at, from the pods as :class:`MovingPod`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

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


MOVE_TIMEOUT_S = 600.0
"""A move whose replacement is not Ready by then is given up (back to the old size)."""


@dataclass(frozen=True)
class Move:
    """A move under way on a body that scales by deletion cost."""

    pod: str
    size: int
    """The size before the move (and after it)."""
    at_s: float

    def to_text(self) -> str:
        return json.dumps({"pod": self.pod, "size": self.size, "atS": self.at_s})

    @classmethod
    def from_text(cls, text: str) -> Move | None:
        """What ``to_text`` wrote; None when it is not that (then the move is cleared)."""
        try:
            doc = json.loads(text)
            return cls(str(doc["pod"]), int(doc["size"]), float(doc["atS"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class MovingPod:
    """What :func:`next_step` reads of one pod of the moving service."""

    name: str
    ready: bool
    terminating: bool
    deletion_cost: int | None
    """The scale-in rank the controller gave it (lowest goes first); None: not yet."""


class Step(Enum):
    WAIT = "wait"
    SCALE_IN = "scale-in"
    """Back to the old size: the moved pod goes (lowest deletion cost)."""
    DONE = "done"
    ABANDON = "abandon"
    """Give up: back to the old size, whichever pod goes."""


def next_step(move: Move, current: int, pods: Sequence[MovingPod], now: float) -> Step:
    """What to do this period for ``move`` of a service scaled to ``current`` replicas
    whose pods are ``pods``."""
    live = [p for p in pods if not p.terminating]
    names = {p.name for p in live}
    if move.pod not in names:
        return Step.DONE
    if current == move.size:  # scaled in: the ReplicaSet deletes the pod next
        return Step.WAIT if len(live) > move.size else Step.DONE  # (another went: done)
    if current != move.size + 1 or now - move.at_s > MOVE_TIMEOUT_S:
        return Step.ABANDON
    if len(live) != move.size + 1 or not all(p.ready for p in live):
        return Step.WAIT  # the replacement is not Ready yet
    mine = next(p.deletion_cost for p in live if p.name == move.pod)
    others = [p.deletion_cost for p in live if p.name != move.pod]
    if mine is None or any(c is None or c <= mine for c in others):
        return Step.WAIT  # the controller has not ranked the replacement yet
    return Step.SCALE_IN
