"""Scale-in order: which replicas of a shrinking service go first.

ACK removes pods "in the reverse order of their scheduling" (units last to first). The
order here, first to go first:

1. **Tier**, in reverse unit order. Replicas recorded in a ResourcePolicy unit
   (``status.unit``) go last unit first (cloud before IDC in the seed). Replicas with no
   unit are placed around them: unassigned ones (no unit and no node: nothing to give
   back, Kubernetes' ReplicaSet also deletes these first) before everything; ones on a
   virtual node before any unit (cloud capacity is billed per use); ones on an ordinary
   (IDC) node after every unit.
2. **Not ready before ready**: Pending, Provisioning, Starting (and Failed) before Ready.
3. **Newest first** by ``status.created_s``, ties by name.

Terminating replicas are already going and are left out.

On Kubernetes the order is carried by ``controller.kubernetes.io/pod-deletion-cost``
(int32; a ReplicaSet deletes lower cost first). :func:`deletion_cost` gives::

    cost = tier_keep * 2**20 + ready * 2**19 + rank

where ``tier_keep`` counts tiers from the front of the order (0: unassigned, 1: no unit
on a virtual node, ``2 + (units - 1 - unit)`` for a unit, ``2 + units``: no unit on an
ordinary node, with ``units`` = highest unit index + 1), ``ready`` is 1 for Ready, and
``rank`` is the replica's position among those of the same tier and readiness in the
order (0: newest). So sorting by cost gives :func:`scale_in_order`, and a new replica
only shifts the costs of its own tier and readiness. The ReplicaSet applies its own
ordering first (unassigned, then Pending before Running, then not-ready before ready),
so the cost decides among replicas it ranks equal, which is what ACK documents too:
best effort, not strictly reverse order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from tierserve.model.node import Node
from tierserve.model.replica import Replica

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
TIER_STEP = 2**20
READY_STEP = 2**19
INT32_MAX = 2**31 - 1

_UNASSIGNED = 0
_VIRTUAL_NO_UNIT = 1
_FIRST_UNIT = 2


def virtual_node_names(nodes: Iterable[Node]) -> frozenset[str]:
    """Names of the virtual nodes, for :func:`scale_in_order`."""
    return frozenset(n.name for n in nodes if n.virtual)


def _units(replicas: Collection[Replica]) -> int:
    return 1 + max((r.status.unit for r in replicas if r.status.unit is not None), default=-1)


def _tier_keep(replica: Replica, units: int, virtual_nodes: Collection[str]) -> int:
    """How far from the front of the order the replica's tier is (0: goes first)."""
    unit = replica.status.unit
    node = replica.status.node_name
    if unit is not None:
        return _FIRST_UNIT + (units - 1 - unit)
    if node is None:
        return _UNASSIGNED
    if node in virtual_nodes:
        return _VIRTUAL_NO_UNIT
    return _FIRST_UNIT + units


_OrderKey = tuple[int, int, float, str]
"""(tier_keep, ready, -created_s, name): first to go first."""


def _order_key(replica: Replica, units: int, virtual_nodes: Collection[str]) -> _OrderKey:
    return (
        _tier_keep(replica, units, virtual_nodes),
        1 if replica.ready else 0,
        -replica.status.created_s,
        replica.name,
    )


def _ordered(
    replicas: Iterable[Replica], virtual_nodes: Collection[str]
) -> list[tuple[_OrderKey, Replica]]:
    """The replicas with their order keys, in scale-in order; Terminating left out."""
    alive = [r for r in replicas if not r.terminating]
    units = _units(alive)
    return sorted(((_order_key(r, units, virtual_nodes), r) for r in alive), key=lambda kr: kr[0])


def scale_in_order(
    replicas: Iterable[Replica], virtual_nodes: Collection[str] = frozenset()
) -> tuple[Replica, ...]:
    """The replicas in the order to remove them (first to go first), Terminating left out.

    ``virtual_nodes`` names the virtual nodes (see :func:`virtual_node_names`); it only
    matters for replicas with no recorded unit.
    """
    return tuple(r for _, r in _ordered(replicas, virtual_nodes))


def deletion_cost(
    replicas: Iterable[Replica], virtual_nodes: Collection[str] = frozenset()
) -> dict[str, int]:
    """``controller.kubernetes.io/pod-deletion-cost`` per replica name (module docstring).

    Lower cost is deleted first; sorting by cost reproduces :func:`scale_in_order`.
    Terminating replicas get none.
    """
    costs: dict[str, int] = {}
    rank: dict[tuple[int, int], int] = {}
    for (tier, ready, _, _), replica in _ordered(replicas, virtual_nodes):
        position = rank.get((tier, ready), 0)
        rank[(tier, ready)] = position + 1
        cost = tier * TIER_STEP + ready * READY_STEP + min(position, READY_STEP - 1)
        costs[replica.name] = min(cost, INT32_MAX)
    return costs


__all__ = [
    "DELETION_COST_ANNOTATION",
    "deletion_cost",
    "scale_in_order",
    "virtual_node_names",
]
