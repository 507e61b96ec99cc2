"""Which real GPUs a new replica gets (pure): the lowest free indices, like the device plugin."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from tierserve.errors import NeverPossible, RetryLater
from tierserve.model import Replica


def pick_gpus(available: Iterable[int], in_use: Collection[int], wanted: int) -> tuple[int, ...]:
    """``wanted`` free indices from ``available`` (a node's GPUs), lowest first.

    Raises ``NeverPossible`` when the node has fewer GPUs than ``wanted`` at all and
    ``RetryLater`` when enough exist but too many are held by other replicas.
    """
    gpus = sorted(set(available))
    if wanted > len(gpus):
        raise NeverPossible(f"replica wants {wanted} GPU(s); the node has {len(gpus)}")
    free = [i for i in gpus if i not in in_use]
    if wanted > len(free):
        raise RetryLater(f"replica wants {wanted} GPU(s); {len(free)} of {len(gpus)} are free")
    return tuple(free[:wanted])


def held_gpus(
    replicas: Iterable[Replica], node: str, except_replica: tuple[str, str] | None = None
) -> set[int]:
    """GPU indices of ``node`` recorded on its replicas (other than ``except_replica``):
    held by a running process, or by one a restarted control plane has yet to adopt."""
    return {
        i
        for r in replicas
        if r.node_name == node and (r.namespace, r.name) != except_replica
        for i in r.status.gpus
    }
