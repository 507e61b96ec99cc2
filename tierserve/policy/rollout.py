"""How many replicas a service creates and which it terminates: scaling and rolling updates.

A replica carries the hash of the template it was made from (``pod-template-hash``, as a
Deployment's pods do). When the service's template changes (``serve update kserve
--image/--command/--gpus/...``), replicas with another hash are *old* and are replaced
the way a Deployment's ``RollingUpdate`` with ``maxSurge: 1, maxUnavailable: 0`` replaces
them: one new replica beyond the wanted count, wait until it is Ready, then one old one
goes (scale-in order: cloud first), and so on. The number of Ready replicas never drops
below the wanted count because of the update.

:func:`plan` is pure: the service's live (not Terminating) replicas, the wanted count,
the current template hash and the virtual nodes in, a :class:`ReplicaPlan` out.

* No old replicas: create up to ``want``, or terminate the surplus in scale-in order.
* Old replicas: not-Ready old ones go at once (they serve nothing); create new ones while
  the total stays within ``want + max_surge`` and the new ones are fewer than ``want``;
  terminate Ready old ones only as far as Ready replicas exceed ``want - max_unavailable``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from tierserve.model.replica import Replica
from tierserve.policy.scalein import scale_in_order

TEMPLATE_HASH_LABEL = "pod-template-hash"
"""Label of the template a replica was made from (Kubernetes' name for it)."""

SCALE_DOWN = "ScaleDown"
ROLLING_UPDATE = "RollingUpdate"


@dataclass(frozen=True)
class ReplicaPlan:
    create: int = 0
    """New replicas to create from the current template."""
    terminate: tuple[Replica, ...] = ()
    """Replicas to terminate, in order."""
    reason: str = ""
    """``ScaleDown`` or ``RollingUpdate`` (why they are terminated)."""


def template_of(replica: Replica) -> str:
    """The template hash a replica was made from: its label, else from its name
    (``<service>-predictor-<hash>-<suffix>``, replicas made before the label existed)."""
    label = replica.metadata.labels.get(TEMPLATE_HASH_LABEL)
    if label:
        return label
    parts = replica.name.rsplit("-", 2)
    return parts[1] if len(parts) == 3 else ""


def plan(
    live: Sequence[Replica],
    want: int,
    template: str,
    virtual_nodes: Collection[str],
    max_surge: int = 1,
    max_unavailable: int = 0,
    retiring: Collection[str] = (),
) -> ReplicaPlan:
    """What to do with one service's ``live`` replicas (see the module doc).

    ``retiring``: replicas to replace as if they were old (make before break: a
    replacement first, Ready, then they go) — a move from the cloud back to the IDC."""
    new = [r for r in live if template_of(r) == template and r.name not in retiring]
    old = [r for r in live if template_of(r) != template or r.name in retiring]
    if not old:
        if len(new) < want:
            return ReplicaPlan(create=want - len(new))
        surplus = len(new) - want
        if surplus > 0:
            return ReplicaPlan(
                terminate=tuple(scale_in_order(new, virtual_nodes)[:surplus]), reason=SCALE_DOWN
            )
        return ReplicaPlan()
    unready_old = [r for r in old if not r.ready]
    ready_old = [r for r in old if r.ready]
    terminate: list[Replica] = list(scale_in_order(unready_old, virtual_nodes))
    total = len(new) + len(ready_old)
    create = max(0, min(want - len(new), want + max_surge - total))
    ready = sum(1 for r in new if r.ready) + len(ready_old)
    spare = ready - max(want - max_unavailable, 0)
    if len(new) > want:  # the wanted count fell during the update
        terminate += scale_in_order(new, virtual_nodes)[: len(new) - want]
    if spare > 0:
        terminate += scale_in_order(ready_old, virtual_nodes)[:spare]
    return ReplicaPlan(create=create, terminate=tuple(terminate), reason=ROLLING_UPDATE)


__all__ = [
    "ROLLING_UPDATE",
    "SCALE_DOWN",
    "TEMPLATE_HASH_LABEL",
    "ReplicaPlan",
    "plan",
    "template_of",
]
