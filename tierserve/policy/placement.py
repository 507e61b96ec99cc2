"""ResourcePolicy placement: which unit and node a pod goes to, or why it cannot go now.

Pure: ``place(pod, snapshot, policies, now_s)`` returns a :class:`Placement` or an
:class:`Unschedulable`; ``filter_nodes`` and ``score_nodes`` answer the scheduler
extender's *filter* and *prioritize* calls with the same logic.

Semantics, after ACK's "Custom elastic resource priority scheduling" (ResourcePolicy,
``scheduling.alibabacloud.com/v1alpha1``; alibabacloud.com/help/en/ack/ack-managed-and-
ack-dedicated/user-guide/configure-priority-based-resource-scheduling, read 2026):

* ``selector`` picks pods by label in the policy's namespace. A pod selected by two or
  more policies is rejected (:class:`ConflictingPolicies`, never possible); ACK leaves
  this undefined.
* ``strategy``: ACK supports only ``prefer``; ``required`` is accepted and means the same
  here: a selected pod lands only on nodes of some unit, never elsewhere.
* ``units`` are tried in order (see :mod:`tierserve.policy.units` for the nodes of a unit
  and what counts toward ``max``/``maxResources``). A unit is *full* when its pods
  ``>= max`` or its used resources plus the pod's ``> maxResources`` (ACK's wording for
  ``ExceedMax``); a full unit is always passed over.
* ``whenTryNextUnits.policy`` decides what a unit that is *not full but has no node that
  fits* does (ACK's descriptions, condensed):

  - ``LackResourceOrExceedMax`` (default): go on to the next unit.
  - ``ExceedMax``: go on only when the unit sets neither ``max`` nor ``maxResources``;
    otherwise the pod waits in the unit (retry later) until it fits or the unit is full.
  - ``TimeoutOrExceedMax``: when the unit sets ``max`` or ``maxResources`` (and is under
    them), or sets neither but its ``podLabels`` carry
    ``k8s.aliyun.com/resource-policy-wait-for-ecs-scaling: "true"``, the pod waits in the
    unit up to ``timeout`` (default 15m) from its creation (``status.created_s``), then
    goes on; otherwise it goes on at once, as in ACK (which describes the wait only for
    those units), and the reason says so (:class:`NoWaitInUnit`).
  - ``LackResourceAndNoTerminating``: go on (from a full unit too) only when no pod of
    the policy in the unit is Terminating; otherwise wait (rolling updates then reuse
    the unit's capacity instead of spilling into the next one).
* ``ignorePreviousPod``, ``ignoreTerminatingPod`` (default true), ``matchLabelKeys``
  (``max`` per group; a pod missing one of the labels is rejected, never possible): see
  :mod:`tierserve.policy.units`.
* ``preemptPolicy`` is recorded on the decision; tierserve does not preempt yet, and an
  :class:`Unschedulable` of a pod whose policy sets it says so, after the real reasons
  (:class:`NoPreemption`); a policy that does not set it is not told about preemption.
* ``podLabels``/``podAnnotations`` of the chosen unit come back on the placement for the
  runtime to apply.

Pods no policy selects may go to any fitting node (virtual ones only with a toleration of
the virtual-kubelet taint). Within a unit, or among all nodes for such pods, the fullest
node after placing wins (GPU fraction, then CPU, ties by name; :mod:`~.fit`).

*Retry later* versus *never possible* (:class:`Retry`): never possible when two policies
select the pod, a ``matchLabelKeys`` label is missing, or no node of any unit (of the
cluster, for a pod without a policy) could hold the pod even if it were empty, or none
passes the pod's node selector and tolerations; everything else (no capacity now, a
full unit, waiting for a timeout or for terminating pods, a cordoned node) is retry later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tierserve.model.replica import Replica
from tierserve.model.resourcepolicy import ResourcePolicy, ResourcePolicySpec, Unit
from tierserve.model.resources import CPU, GPU, PODS, Toleration, matches
from tierserve.policy.decisions import (
    Decision,
    FilterResult,
    NodeScore,
    Placement,
    Retry,
    Unschedulable,
)
from tierserve.policy.fit import CPU_WEIGHT, GPU_WEIGHT, MAX_SCORE, Requests, requests_of
from tierserve.policy.reasons import (
    ConflictingPolicies,
    ExceedMax,
    ExceedMaxResources,
    LackResource,
    MissingMatchLabel,
    NodeNotFound,
    NodeReason,
    NoPreemption,
    NoWaitInUnit,
    OutsideUnit,
    PodRejected,
    PolicyReason,
    TerminatingPods,
    UnitReason,
    WaitingForTimeout,
    WaitingInUnit,
)
from tierserve.policy.scan import never_fits, restrict, scan_nodes
from tierserve.policy.snapshot import NodeState, Snapshot
from tierserve.policy.units import (
    UNIT_ANNOTATION,
    Group,
    UnitUsage,
    applied_labels,
    selects,
    unit_id,
    unit_nodes,
    unit_tolerations,
    unit_usage,
    waits_for_scaling,
)

# --- the decision ------------------------------------------------------------------------


@dataclass
class _Outcome:
    decision: Decision
    allowed: list[NodeState] = field(default_factory=list)
    by_node: dict[str, NodeReason] = field(default_factory=dict)
    """Reasons for nodes scanned in the deciding unit (or the whole cluster)."""
    outside: NodeReason | None = None
    """The reason for candidates not scanned in the deciding unit."""


def _limits(
    index: int, unit: Unit, usage: UnitUsage, req: Mapping[str, int], group: Group
) -> ExceedMax | ExceedMaxResources | None:
    if unit.max is not None and usage.count >= unit.max:
        return ExceedMax(index, unit.max, usage.count, group)
    for resource, limit in (unit.max_resources or {}).items():
        if resource == PODS:
            used, wanted = usage.count * 1000, 1000
        else:
            used, wanted = usage.used.get(resource, 0), req.get(resource, 0)
        if used + wanted > limit:
            return ExceedMaxResources(index, resource, limit, used, wanted)
    return None


def _preemption(preempt_policy: str | None) -> tuple[PolicyReason, ...]:
    """Say that tierserve does not preempt only to a user who asked for a preemptPolicy."""
    return () if preempt_policy is None else (NoPreemption(preempt_policy),)


def _waits_in(unit: Unit) -> bool:
    """Whether ``ExceedMax``/``TimeoutOrExceedMax`` keep a pod that lacks room in ``unit``:
    it sets ``max`` or ``maxResources``, or carries ACK's wait-for-scaling label."""
    return unit.max is not None or bool(unit.max_resources) or waits_for_scaling(unit)


def _never_for_policy(
    snapshot: Snapshot, pod: Replica, spec: ResourcePolicySpec, requests: Requests
) -> PolicyReason | None:
    names: dict[str, tuple[Toleration, ...]] = {}
    for unit in spec.units:
        tolerations = unit_tolerations(unit, pod)
        for name in unit_nodes(snapshot, unit):
            names.setdefault(name, tolerations)
    return never_fits(snapshot, pod, names.items(), requests)


def _decide_policy(
    pod: Replica,
    snapshot: Snapshot,
    policy: ResourcePolicy,
    now_s: float,
    candidates: frozenset[str] | None,
    collect: bool,
) -> _Outcome:
    spec = policy.spec
    name = policy.name
    pairs: list[tuple[str, str]] = []
    for key in spec.match_label_keys:
        value = pod.metadata.labels.get(key)
        if value is None:
            reason = MissingMatchLabel(name, key)
            return _Outcome(
                Unschedulable(pod.name, Retry.NEVER, name, reasons=(reason,)),
                outside=PodRejected(reason),
            )
        pairs.append((key, value))
    group: Group = tuple(pairs)
    requests = requests_of(pod)
    req = dict(requests)
    itself = snapshot.pod(pod.namespace, pod.name)
    tried: list[UnitReason] = []
    seen: dict[str, NodeReason] = {}  # per candidate node: why, from the first unit scanned
    try_next = spec.when_try_next_units
    try_next_policy = try_next.policy

    def waiting(*why: UnitReason, after_s: float | None = None) -> _Outcome:
        return _Outcome(
            Unschedulable(
                pod.name,
                Retry.LATER,
                name,
                units=(*tried, *why),
                reasons=_preemption(spec.preempt_policy),
                retry_after_s=after_s,
            ),
            by_node=seen,
            outside=OutsideUnit(name, None),
        )

    for index, unit in enumerate(spec.units):
        usage = unit_usage(snapshot, policy, index, group).without(itself)
        full = _limits(index, unit, usage, req, group)
        if full is not None:
            if try_next_policy == "LackResourceAndNoTerminating" and usage.terminating:
                return waiting(full, TerminatingPods(index, usage.terminating))
            tried.append(full)
            continue
        members = unit_nodes(snapshot, unit)
        scanned = restrict(members, candidates)
        scan = scan_nodes(
            snapshot,
            scanned,
            requests,
            pod,
            unit_tolerations(unit, pod),
            collect,
        )
        for node_name, why in (scan.by_node or {}).items():
            seen.setdefault(node_name, why)
        best = scan.best
        if best is not None:
            placement = Placement(
                pod=pod.name,
                node=best.name,
                unit=index,
                policy=name,
                unit_id=unit_id(spec.units, index),
                pod_labels=applied_labels(unit),
                pod_annotations=dict(unit.pod_annotations),
                reasons=tuple(tried),
                preempt_policy=spec.preempt_policy,
            )
            return _Outcome(placement, scan.fits, scan.by_node or {}, OutsideUnit(name, index))
        lack = LackResource(index, scan.total, scan.why(), len(members) - scan.total)
        if try_next_policy == "ExceedMax" and _waits_in(unit):
            return waiting(lack, WaitingInUnit(index))
        if try_next_policy == "TimeoutOrExceedMax" and _waits_in(unit):
            timeout_s = try_next.timeout_s
            until_s = pod.status.created_s + timeout_s
            if until_s > now_s:
                return waiting(
                    lack, WaitingForTimeout(index, timeout_s, until_s), after_s=until_s - now_s
                )
        if try_next_policy == "LackResourceAndNoTerminating" and usage.terminating:
            return waiting(lack, TerminatingPods(index, usage.terminating))
        tried.append(lack)
        if try_next_policy in ("ExceedMax", "TimeoutOrExceedMax") and not _waits_in(unit):
            tried.append(NoWaitInUnit(index, try_next_policy))  # moved on at once: say why
    never = _never_for_policy(snapshot, pod, spec, requests)
    reasons = _preemption(spec.preempt_policy)
    if never is not None:
        reasons = (never, *reasons)
    return _Outcome(
        Unschedulable(pod.name, Retry.NEVER if never else Retry.LATER, name, tuple(tried), reasons),
        by_node=seen,
        outside=OutsideUnit(name, None),
    )


def _decide_free(
    pod: Replica, snapshot: Snapshot, candidates: frozenset[str] | None, collect: bool
) -> _Outcome:
    """A pod no policy selects: any fitting node, binpacked."""
    requests = requests_of(pod)
    tolerations = tuple(pod.spec.tolerations)
    names: Iterable[str] = snapshot.nodes.keys() if candidates is None else candidates
    scan = scan_nodes(snapshot, names, requests, pod, tolerations, collect)
    best = scan.best
    if best is not None:
        return _Outcome(Placement(pod=pod.name, node=best.name), scan.fits, scan.by_node or {})
    never = never_fits(snapshot, pod, ((n, tolerations) for n in snapshot.nodes), requests)
    return _Outcome(
        Unschedulable(
            pod.name,
            Retry.NEVER if never else Retry.LATER,
            reasons=(never,) if never else (),
            nodes=scan.why(),
        ),
        by_node=scan.by_node or {},
    )


def _policy_index(
    policies: Iterable[ResourcePolicy],
) -> dict[tuple[str, str, str], list[ResourcePolicy]]:
    index: dict[tuple[str, str, str], list[ResourcePolicy]] = {}
    for policy in policies:
        key, value = next(iter(policy.spec.selector.items()))  # selectors are never empty
        index.setdefault((policy.metadata.namespace, key, value), []).append(policy)
    return index


def _selecting(
    pod: Replica, snapshot: Snapshot, policies: Iterable[ResourcePolicy]
) -> list[ResourcePolicy]:
    """The policies that select ``pod``.

    A list or tuple of policies is indexed by (namespace, first selector label) once per
    snapshot (keyed by the identities of its policies, which are immutable), so the
    extender does not walk a thousand policies per call.
    """
    if not isinstance(policies, list | tuple):
        return [p for p in policies if selects(p, pod)]
    ids = tuple(map(id, policies))
    memo = snapshot.memo()
    hit = memo.get(("policies", id(policies)))
    if hit is None or hit[1] != ids:
        hit = (policies, ids, _policy_index(policies))
        memo[("policies", id(policies))] = hit
    index: dict[tuple[str, str, str], list[ResourcePolicy]] = hit[2]
    namespace, labels = pod.metadata.namespace, pod.metadata.labels
    found: list[ResourcePolicy] = []
    for key, value in labels.items():
        for policy in index.get((namespace, key, value), ()):
            if matches(policy.spec.selector, labels):
                found.append(policy)
    return found


def _decide(
    pod: Replica,
    snapshot: Snapshot,
    policies: Iterable[ResourcePolicy],
    now_s: float,
    candidates: frozenset[str] | None,
    collect: bool,
) -> _Outcome:
    selected = _selecting(pod, snapshot, policies)
    if len(selected) > 1:
        reason = ConflictingPolicies(tuple(sorted(p.name for p in selected)))
        return _Outcome(
            Unschedulable(pod.name, Retry.NEVER, reasons=(reason,)), outside=PodRejected(reason)
        )
    if selected:
        return _decide_policy(pod, snapshot, selected[0], now_s, candidates, collect)
    return _decide_free(pod, snapshot, candidates, collect)


# --- public API --------------------------------------------------------------------------


def place(
    pod: Replica, snapshot: Snapshot, policies: Iterable[ResourcePolicy], now_s: float
) -> Decision:
    """Where ``pod`` goes now among all the snapshot's nodes, or why it cannot go.

    ``now_s`` (Unix seconds) is used only for ``TimeoutOrExceedMax`` timeouts, which
    count from ``pod.status.created_s``.
    """
    return _decide(pod, snapshot, policies, now_s, None, collect=False).decision


def filter_nodes(
    pod: Replica,
    snapshot: Snapshot,
    policies: Iterable[ResourcePolicy],
    now_s: float,
    candidates: Sequence[str],
) -> FilterResult:
    """The extender's filter: which ``candidates`` the pod may go to now.

    A pod with a policy is allowed only on fitting nodes of the first unit that can take
    it (capacity among ``candidates``); every other candidate gets a typed reason
    (:class:`OutsideUnit` for nodes of other units or none).
    """
    outcome = _decide(pod, snapshot, policies, now_s, frozenset(candidates), collect=True)
    allowed = {s.name for s in outcome.allowed}
    outside = outcome.outside
    # built in bulk: the extender passes thousands of candidates
    rejected: dict[str, NodeReason] = dict.fromkeys(
        candidates, outside if outside is not None else NodeNotFound()
    )
    for name in allowed:
        del rejected[name]
    rejected.update(outcome.by_node)
    known = snapshot.nodes
    for name in rejected.keys() - known.keys():
        rejected[name] = NodeNotFound()
    return FilterResult(
        allowed=tuple(n for n in candidates if n in allowed),
        rejected=rejected,
        decision=outcome.decision,
    )


def score_nodes(
    pod: Replica, snapshot: Snapshot, candidates: Iterable[str]
) -> tuple[NodeScore, ...]:
    """The extender's prioritize: 0..10 per candidate, binpacking (fuller after placing
    scores higher). Unknown nodes score 0.

    ``floor(10 * (3 * gpu_fraction + 1 * cpu_fraction) / weights)`` after placing; only
    resources the node has count toward the weights (a CPU-only node scores on CPU
    alone), a node with neither scores 0, and fractions are capped at 1.
    """
    req = dict(requests_of(pod))
    req_gpu, req_cpu = req.get(GPU, 0), req.get(CPU, 0)
    nodes = snapshot.nodes
    out = []
    # one loop, no per-node calls: the extender scores thousands of nodes a call
    for name in candidates:
        state = nodes.get(name)
        if state is None:
            out.append(NodeScore(name, 0))
            continue
        gpus, cpus = state.gpu_alloc, state.cpu_alloc
        total = 0.0
        weights = 0
        if gpus > 0:
            total += GPU_WEIGHT * min(1.0, (state.gpu_used + req_gpu) / gpus)
            weights += GPU_WEIGHT
        if cpus > 0:
            total += CPU_WEIGHT * min(1.0, (state.cpu_used + req_cpu) / cpus)
            weights += CPU_WEIGHT
        score = min(MAX_SCORE, math.floor(MAX_SCORE * total / weights + 1e-9)) if weights else 0
        out.append(NodeScore(name, score))
    return tuple(out)


def bind(pod: Replica, placement: Placement) -> Replica:
    """The pod as placed: node and unit recorded (the unit's identity in the
    ``scheduling.tierserve.io/unit`` annotation), the unit's labels and annotations put on.

    The phase is left as it is; the runtime moves it on.
    """
    annotations = {**pod.metadata.annotations, **placement.pod_annotations}
    if placement.unit_id is not None:
        annotations[UNIT_ANNOTATION] = placement.unit_id
    meta = pod.metadata.model_copy(
        update={
            "labels": {**pod.metadata.labels, **placement.pod_labels},
            "annotations": annotations,
        }
    )
    placed = pod.model_copy(update={"metadata": meta})
    return placed.with_status(node_name=placement.node, unit=placement.unit)


__all__ = [
    "Decision",
    "FilterResult",
    "NodeScore",
    "Placement",
    "Retry",
    "Unschedulable",
    "bind",
    "filter_nodes",
    "place",
    "score_nodes",
]
