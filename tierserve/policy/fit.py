"""Node fit and GPU binpacking: can this node take the pod now, and how full would it be.

Fit follows the Kubernetes scheduler's default filters, in its order:
``NodeUnschedulable`` (cordoned), ``NodeAffinity`` (the pod's ``nodeSelector``),
``TaintToleration`` (NoSchedule/NoExecute repel unless tolerated), ``NodeResourcesFit``
(every requested resource, plus one more pod when the node has a ``pods`` figure; a node
without one has no pod limit; a resource the node does not list has 0 allocatable).

Binpacking is Kubernetes' ``MostAllocated`` on the node's state *after* the pod lands:
prefer the highest GPU fraction, then the highest CPU fraction, ties by node name, so
partly used GPU nodes fill up and whole GPU nodes stay free for whole-node work. It is
computed inline in the extender's hot loops: :func:`~.scan.scan_nodes` picks the fullest
fitting node, :func:`~.placement.score_nodes` scores with the weights below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tierserve.model.replica import Replica
from tierserve.model.resources import PODS, Toleration
from tierserve.policy.reasons import (
    InsufficientResource,
    NodeReason,
    NodeSelectorMismatch,
    NodeUnschedulable,
    UntoleratedTaint,
)
from tierserve.policy.snapshot import NodeState

Requests = tuple[tuple[str, int], ...]
"""A pod's non-zero requests (``pods`` left out: every pod takes one)."""

MAX_SCORE = 10
"""The scheduler extender's score range is 0..10 (Kubernetes' ``MaxExtenderPriority``)."""
GPU_WEIGHT = 3
CPU_WEIGHT = 1
"""Score weights: GPUs dominate, CPU breaks near-ties (the order ``place`` uses exactly)."""

_ONE_POD = 1000


def requests_of(pod: Replica) -> Requests:
    return tuple((r, a) for r, a in sorted(pod.spec.requests.items()) if a > 0 and r != PODS)


def _untolerated(state: NodeState, tolerations: Sequence[Toleration]) -> UntoleratedTaint | None:
    for taint in state.taints:
        if not any(tol.tolerates(taint) for tol in tolerations):
            return UntoleratedTaint(taint.key, taint.value, taint.effect)
    return None


def _selector_mismatch(
    state: NodeState, node_selector: Mapping[str, str]
) -> NodeSelectorMismatch | None:
    for key, wanted in node_selector.items():
        actual = state.labels.get(key)
        if actual != wanted:
            return NodeSelectorMismatch(key, wanted, actual)
    return None


def static_misfit(
    state: NodeState, node_selector: Mapping[str, str], tolerations: Sequence[Toleration]
) -> NodeReason | None:
    """What rules the node out whatever runs on it: the pod's selector or a taint."""
    if node_selector:
        mismatch = _selector_mismatch(state, node_selector)
        if mismatch is not None:
            return mismatch
    if state.taints:
        return _untolerated(state, tolerations)
    return None


def misfit(
    state: NodeState,
    requests: Requests,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Toleration],
) -> NodeReason | None:
    """Why ``state`` cannot take the pod now, or ``None`` when it fits."""
    if state.unschedulable:
        return NodeUnschedulable()
    reason = static_misfit(state, node_selector, tolerations)
    if reason is not None:
        return reason
    if state.max_pods is not None and state.pods >= state.max_pods:
        return InsufficientResource(PODS, _ONE_POD, (state.max_pods - state.pods) * _ONE_POD)
    free_amounts = state.free_amounts
    for resource, amount in requests:
        free = free_amounts.get(resource, 0)
        if free < amount:
            return InsufficientResource(resource, amount, free)
    return None


def could_ever_fit(state: NodeState, requests: Requests) -> InsufficientResource | None:
    """Why ``state`` could not hold the pod even with nothing else on it, or ``None``."""
    if state.max_pods is not None and state.max_pods < 1:
        return InsufficientResource(PODS, _ONE_POD, state.max_pods * _ONE_POD)
    for resource, amount in requests:
        alloc = state.allocatable.get(resource, 0)
        if alloc < amount:
            return InsufficientResource(resource, amount, alloc)
    return None


__all__ = [
    "CPU_WEIGHT",
    "GPU_WEIGHT",
    "MAX_SCORE",
    "Requests",
    "could_ever_fit",
    "misfit",
    "requests_of",
    "static_misfit",
]
