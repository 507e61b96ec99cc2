"""Node fit and GPU binpacking: can this node take the pod now, and how full would it be.

Fit follows the Kubernetes scheduler's default filters, in its order:
``NodeUnschedulable`` (cordoned), ``NodeAffinity`` (the pod's ``nodeSelector``),
``TaintToleration`` (NoSchedule/NoExecute repel unless tolerated), ``NodeResourcesFit``
(every requested resource, plus one more pod when the node has a ``pods`` figure; a node
without one has no pod limit; a resource the node does not list has 0 allocatable).

Binpacking is Kubernetes' ``MostAllocated`` on the node's state *after* the pod lands:
prefer the highest GPU fraction, then the highest CPU fraction, ties by node name, so
partly used GPU nodes fill up and whole GPU nodes stay free for whole-node work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tierserve.model.replica import Replica
from tierserve.model.resources import CPU, GPU, PODS, Toleration
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
    if node_selector or state.taints:
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


def _fraction_after(state: NodeState, resource: str, requests: Mapping[str, int]) -> float:
    alloc = state.allocatable.get(resource, 0)
    if alloc <= 0:
        return 0.0
    return (state.requested.get(resource, 0) + requests.get(resource, 0)) / alloc


def binpack_key(state: NodeState, requests: Mapping[str, int]) -> tuple[float, float]:
    """(GPU fraction, CPU fraction) after placing the pod; larger is fuller, so preferred."""
    return (_fraction_after(state, GPU, requests), _fraction_after(state, CPU, requests))


def best_node(states: Sequence[NodeState], requests: Mapping[str, int]) -> NodeState:
    """The fullest node after placing (GPU, then CPU), ties by the smallest name."""
    best = states[0]
    best_key = binpack_key(best, requests)
    for state in states[1:]:
        key = binpack_key(state, requests)
        if key > best_key or (key == best_key and state.name < best.name):
            best, best_key = state, key
    return best


def binpack_score(state: NodeState, requests: Mapping[str, int]) -> int:
    """0..10: ``floor(10 * (3 * gpu_fraction + 1 * cpu_fraction) / weights)`` after placing.

    Only resources the node has count toward the weights (a CPU-only node scores on CPU
    alone); a node with neither scores 0. Fractions are capped at 1.
    """
    total = 0.0
    weights = 0
    for resource, weight in ((GPU, GPU_WEIGHT), (CPU, CPU_WEIGHT)):
        if state.allocatable.get(resource, 0) > 0:
            total += weight * min(1.0, _fraction_after(state, resource, requests))
            weights += weight
    if not weights:
        return 0
    return min(MAX_SCORE, math.floor(MAX_SCORE * total / weights + 1e-9))


__all__ = [
    "CPU_WEIGHT",
    "GPU_WEIGHT",
    "MAX_SCORE",
    "Requests",
    "best_node",
    "binpack_key",
    "binpack_score",
    "could_ever_fit",
    "misfit",
    "requests_of",
    "static_misfit",
]
