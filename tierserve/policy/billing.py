"""GPU-seconds and cloud cost: what every replica's time on a node adds to the ledger.

A replica is billed from when it was scheduled (an IDC node) or began provisioning (a
virtual node: the cloud bills the cold start too) until it is gone, for the GPUs it
requests; on a virtual node at the node's price per GPU-hour. :func:`bill` turns the
interval since a replica was last billed into one :class:`Charge`; the body adds the
charge to its counters and moves ``billedUntilS`` in one transaction, so an interval is
billed exactly once even across a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tierserve.model import GPU, Node, Replica

GPU_SECONDS = "gpu_seconds"
CLOUD_COST = "cloud_cost"


@dataclass(frozen=True)
class Charge:
    """``gpu_seconds`` (and ``cloud_cost``, 0 on IDC) for ``replica`` up to ``until_s``."""

    replica: Replica
    labels: Mapping[str, str]
    """namespace, service, tier, node: the ledger's labels."""
    gpu_seconds: float
    cloud_cost: float
    cloud: bool
    """On a virtual node: the charge goes to the cloud-cost ledger too."""
    until_s: float


def bill(replica: Replica, node: Node | None, now: float) -> Charge | None:
    """The charge for ``replica`` since it was last billed; None when nothing is due."""
    start = replica.status.scheduled_s
    if start is None or node is None:
        return None
    billed = replica.status.billed_until_s
    since = billed if billed is not None else start
    if now <= since:
        return None
    gpus = replica.spec.requests.get(GPU, 0) / 1000
    gpu_s = (now - since) * gpus
    price = node.spec.virtual.price_per_gpu_hour if node.spec.virtual is not None else 0.0
    labels = {
        "namespace": replica.namespace,
        "service": replica.spec.service,
        "tier": node.tier,
        "node": node.name,
    }
    return Charge(replica, labels, gpu_s, gpu_s / 3600 * price, node.virtual, now)
