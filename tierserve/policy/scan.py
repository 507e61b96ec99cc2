"""Scanning a set of nodes for one pod: which fit now, why the others do not, and
whether any could ever hold the pod (the *never possible* test)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tierserve.model.replica import Replica
from tierserve.model.resources import CPU, GPU, PODS, Toleration
from tierserve.policy.fit import Requests, could_ever_fit, misfit, static_misfit
from tierserve.policy.reasons import (
    InsufficientResource,
    NeverFits,
    NodeCount,
    NodeNotFound,
    NodeReason,
    NoEligibleNodes,
    PolicyReason,
)
from tierserve.policy.snapshot import NodeState, Snapshot


def _kind(reason: NodeReason) -> tuple[str, str]:
    detail = getattr(reason, "resource", None) or getattr(reason, "key", None) or ""
    return (type(reason).__name__, str(detail))


@dataclass
class Scan:
    """Fitting nodes of one node set, and the others grouped (and, if asked, by node)."""

    fits: list[NodeState] = field(default_factory=list)
    counts: dict[tuple[str, str], NodeCount] = field(default_factory=dict)
    by_node: dict[str, NodeReason] | None = None
    total: int = 0
    best: NodeState | None = None
    """The fullest fitting node after placing (GPU, then CPU), ties by name."""

    def reject(self, name: str, reason: NodeReason) -> None:
        kind = _kind(reason)
        seen = self.counts.get(kind)
        if seen is None:
            self.counts[kind] = NodeCount(reason, 1)
        else:
            keep = seen.reason
            if (
                isinstance(reason, InsufficientResource)
                and isinstance(keep, InsufficientResource)
                and reason.free > keep.free
            ):
                keep = reason
            self.counts[kind] = NodeCount(keep, seen.nodes + 1)
        if self.by_node is not None:
            self.by_node[name] = reason

    def why(self) -> tuple[NodeCount, ...]:
        return tuple(sorted(self.counts.values(), key=lambda c: (-c.nodes, c.reason.message())))


def scan_nodes(
    snapshot: Snapshot,
    names: Iterable[str],
    requests: Requests,
    pod: Replica,
    tolerations: Sequence[Toleration],
    collect: bool,
) -> Scan:
    """Check every named node; also track the binpacking winner: the fullest fitting node
    after placing (GPU fraction, then CPU fraction), ties by the smallest name.

    The loop is the extender's hot path (thousands of nodes a call), so the common case
    (schedulable, untainted, no pod selector or pod limit) is checked inline.
    """
    scan = Scan(by_node={} if collect else None)
    nodes = snapshot.nodes
    selector = pod.spec.node_selector
    wanted = dict(requests)
    req_gpu, req_cpu = wanted.get(GPU, 0), wanted.get(CPU, 0)
    fits = scan.fits
    best: NodeState | None = None
    best_key = (-1.0, -1.0)
    total = 0
    for name in names:
        total += 1
        state = nodes.get(name)
        if state is None:
            scan.reject(name, NodeNotFound())
            continue
        reason: NodeReason | None = None
        if state.unschedulable or state.taints or selector:
            reason = misfit(state, requests, selector, tolerations)
        elif state.max_pods is not None and state.pods >= state.max_pods:
            reason = InsufficientResource(PODS, 1000, (state.max_pods - state.pods) * 1000)
        else:
            free_amounts = state.free_amounts
            for resource, amount in requests:
                free = free_amounts.get(resource, 0)
                if free < amount:
                    reason = InsufficientResource(resource, amount, free)
                    break
        if reason is not None:
            scan.reject(name, reason)
            continue
        fits.append(state)
        gpus, cpus = state.gpu_alloc, state.cpu_alloc
        key = (
            (state.gpu_used + req_gpu) / gpus if gpus > 0 else 0.0,
            (state.cpu_used + req_cpu) / cpus if cpus > 0 else 0.0,
        )
        if best is None or key > best_key or (key == best_key and name < best.name):
            best, best_key = state, key
    scan.total = total
    scan.best = best
    return scan


def restrict(nodes: frozenset[str], candidates: frozenset[str] | None) -> Iterable[str]:
    """``nodes`` among ``candidates`` (all of them when None); order does not matter, as
    the binpacking winner breaks ties by name."""
    return nodes if candidates is None else nodes & candidates


def never_fits(
    snapshot: Snapshot,
    pod: Replica,
    nodes: Iterable[tuple[str, Sequence[Toleration]]],
    requests: Requests,
) -> PolicyReason | None:
    """Why no node could ever hold the pod (even empty), or None if one could."""
    eligible = 0
    lacking: dict[str, tuple[int, InsufficientResource]] = {}
    for name, tolerations in nodes:
        state = snapshot.nodes[name]
        if static_misfit(state, pod.spec.node_selector, tolerations) is not None:
            continue
        eligible += 1
        short = could_ever_fit(state, requests)
        if short is None:
            return None
        count, worst = lacking.get(short.resource, (0, short))
        lacking[short.resource] = (count + 1, short if short.free > worst.free else worst)
    if not eligible:
        return NoEligibleNodes()
    _, worst = max(lacking.values(), key=lambda item: (item[0], item[1].resource))
    return NeverFits(worst.resource, worst.requested, worst.free)


__all__ = ["Scan", "never_fits", "restrict", "scan_nodes"]
