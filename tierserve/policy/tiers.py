"""The tiers a service can run on, as the tier planner sees them: what each holds now,
how many more replicas of the service it has room for, its cold start and its price.

Room is found with the ResourcePolicy placement itself: replicas of the service are
placed one after another on a copy of the cluster snapshot until one cannot be placed
now, and each is counted on the tier of the node it landed on — so units, ``max``,
``whenTryNextUnits``, node fit and virtual-node quotas all count exactly as they will
when the replicas are created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tierserve.model import GPU, InferenceService, Node, Replica, ResourcePolicy
from tierserve.policy.decisions import Placement
from tierserve.policy.naming import template_hash
from tierserve.policy.placement import bind, place
from tierserve.policy.planner import Tier
from tierserve.policy.provisioning import cold_start_s
from tierserve.policy.replicaset import new_replica, service_key
from tierserve.policy.snapshot import Snapshot

TIERS = ("idc", "cloud")


def _allocated(
    service: InferenceService, replicas: Sequence[Replica], nodes: Mapping[str, Node]
) -> dict[str, int]:
    out = dict.fromkeys(TIERS, 0)
    key = (service.namespace, service.name)
    for r in replicas:
        node = nodes.get(r.node_name or "")
        if node is not None and service_key(r) == key and not r.terminating:
            out[node.tier] += 1
    return out


def tiers_for(
    service: InferenceService,
    replicas: Sequence[Replica],
    nodes: Mapping[str, Node],
    policies: Sequence[ResourcePolicy],
    now: float,
    startup_s: float,
    limit: int,
    observed_cold_start_s: Mapping[str, float] | None = None,
) -> list[Tier]:
    """The IDC and cloud tiers for ``service``.

    ``startup_s``: process start + engine load of one replica; a tier's cold start is
    that plus its nodes' provisioning (``coldStartSeconds``), unless
    ``observed_cold_start_s`` has a learned value for it. ``limit``: room is counted up
    to this many replicas (the planner never needs more than its ``maxReplicas``)."""
    snapshot = Snapshot.build(nodes.values(), replicas)
    template = template_hash(service)
    room = dict.fromkeys(TIERS, 0)
    prices = dict.fromkeys(TIERS, 0.0)
    provision = dict.fromkeys(TIERS, 0.0)
    gpus = service.requests().get(GPU, 0) / 1000
    for i in range(max(0, limit)):
        probe = new_replica(service, f"{service.predictor}-planner-probe-{i}", template, now)
        decision = place(probe, snapshot, policies, now)
        if not isinstance(decision, Placement):
            break
        node = nodes[decision.node]
        room[node.tier] += 1
        if node.spec.virtual is not None:
            prices[node.tier] = max(prices[node.tier], node.spec.virtual.price_per_gpu_hour * gpus)
        provision[node.tier] = max(provision[node.tier], cold_start_s(node))
        snapshot = snapshot.with_pod(bind(probe, decision).with_status(node_name=node.name))
    for node in nodes.values():  # a tier with no room still has a price and a cold start
        if node.spec.virtual is not None:
            prices[node.tier] = max(prices[node.tier], node.spec.virtual.price_per_gpu_hour * gpus)
            provision[node.tier] = max(provision[node.tier], cold_start_s(node))
    allocated = _allocated(service, replicas, nodes)
    observed = observed_cold_start_s or {}
    return [
        Tier(
            name=tier,
            allocated=allocated[tier],
            room=room[tier],
            cold_start_s=observed.get(tier, provision[tier] + startup_s),
            price_per_replica_hour=prices[tier],
        )
        for tier in TIERS
    ]
