"""Kubernetes API objects (JSON dicts) to tierserve's typed model, and back where needed.

* A Node is *virtual* (cloud capacity) when it carries the label ``type: virtual-kubelet``
  or a ``virtual-kubelet.io/provider`` taint, as virtual-kubelet and ACK's virtual nodes
  do; a Kubernetes Node has no ``spec.virtual`` of its own. Its price per GPU-hour and
  cold start come from the annotations ``tierserve.io/price-per-gpu-hour`` and
  ``tierserve.io/cold-start-seconds``.
* A Pod becomes a :class:`Replica`: requests summed over its containers (the largest init
  container counted if bigger, plus ``overhead``), the unit it was placed in from the
  ``scheduling.tierserve.io/unit`` annotation the extender writes at bind time (the
  unit's identity, resolved against the policy by
  :func:`~tierserve.policy.units.home_unit`; an older index value is kept in
  ``status.unit``), and a phase from the pod's phase, node, readiness and deletion
  timestamp.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tierserve.model.base import ObjectMeta
from tierserve.model.node import VIRTUAL_KUBELET_TAINT, Node, NodeSpec, NodeStatus, VirtualSpec
from tierserve.model.quantity import QuantityError, parse_milli
from tierserve.model.replica import Phase, Replica, ReplicaSpec, ReplicaStatus
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.model.resources import Taint, Toleration
from tierserve.policy.units import UNIT_ANNOTATION

Obj = dict[str, Any]

POLICY_ANNOTATION = "scheduling.tierserve.io/policy"
"""Which ResourcePolicy placed the pod."""
PRICE_ANNOTATION = "tierserve.io/price-per-gpu-hour"
"""On a virtual node: what one of its GPUs costs per hour (the cloud-cost ledger's rate)."""
COLD_START_ANNOTATION = "tierserve.io/cold-start-seconds"
"""On a virtual node: its configured cold start (the planner's prior)."""
VIRTUAL_KUBELET_LABEL = ("type", "virtual-kubelet")
VIRTUAL_KUBELET_TAINT_KEY = VIRTUAL_KUBELET_TAINT.key


def is_virtual(obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    if labels.get(VIRTUAL_KUBELET_LABEL[0]) == VIRTUAL_KUBELET_LABEL[1]:
        return True
    taints = obj.get("spec", {}).get("taints") or []
    return any(t.get("key") == VIRTUAL_KUBELET_TAINT_KEY for t in taints)


def timestamp_s(text: str | None) -> float:
    """An RFC 3339 timestamp (``2026-11-30T05:50:37Z``) in Unix seconds; 0 when absent."""
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _meta(obj: Obj, namespaced: bool = True) -> ObjectMeta:
    meta = obj.get("metadata") or {}
    return ObjectMeta(
        name=meta["name"],
        namespace=meta.get("namespace") or "default" if namespaced else "default",
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        uid=meta.get("uid"),
        creation_timestamp=meta.get("creationTimestamp"),
        resource_version=meta.get("resourceVersion"),
        deletion_timestamp=meta.get("deletionTimestamp"),
    )


def _quantities(values: Obj | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, amount in (values or {}).items():
        try:
            out[name] = parse_milli(amount)
        except QuantityError:
            continue  # a quantity the API server accepted but we cannot read: ignore it
    return out


def _as_quantities(milli: dict[str, int]) -> dict[str, str]:
    """Milli-amounts as quantity strings: the model's ResourceList parses quantities (a bare
    int would be read as whole units)."""
    return {name: f"{amount}m" for name, amount in milli.items()}


def _annotation_float(obj: Obj, key: str) -> float | None:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None  # a value the ledger cannot read is ignored, not fatal
    return value if value is not None and value >= 0 else None


def _virtual(obj: Obj) -> VirtualSpec:
    fields: dict[str, float] = {}
    price = _annotation_float(obj, PRICE_ANNOTATION)
    if price is not None:
        fields["price_per_gpu_hour"] = price
    cold = _annotation_float(obj, COLD_START_ANNOTATION)
    if cold is not None:
        fields["cold_start_seconds"] = cold
    return VirtualSpec(**fields)


def _scheduled_s(obj: Obj) -> float | None:
    """When the pod was bound: its PodScheduled=True condition's transition time."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "True":
            return timestamp_s(c.get("lastTransitionTime")) or None
    return None


def node_from_k8s(obj: Obj) -> Node:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    taints = [
        Taint(key=t["key"], value=t.get("value", ""), effect=t["effect"])
        for t in spec.get("taints") or []
    ]
    return Node(
        metadata=_meta(obj, namespaced=False),
        spec=NodeSpec(
            taints=taints,
            unschedulable=bool(spec.get("unschedulable", False)),
            virtual=_virtual(obj) if is_virtual(obj) else None,
        ),
        status=NodeStatus(
            capacity=_as_quantities(_quantities(status.get("capacity"))),
            allocatable=_as_quantities(
                _quantities(status.get("allocatable") or status.get("capacity"))
            ),
        ),
    )


def _container_requests(container: Obj) -> dict[str, int]:
    resources = container.get("resources") or {}
    req = _quantities(resources.get("requests"))
    for name, amount in _quantities(resources.get("limits")).items():
        req.setdefault(name, amount)  # requests default to limits
    return req


def pod_requests(spec: Obj) -> dict[str, int]:
    """Effective requests of a pod spec in milli-units (Kubernetes' computePodRequests)."""
    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = total.get(name, 0) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = max(total.get(name, 0), amount)
    for name, amount in _quantities(spec.get("overhead")).items():
        total[name] = total.get(name, 0) + amount
    return total


def _phase(obj: Obj) -> Phase:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Phase.TERMINATING
    phase = status.get("phase", "Pending")
    if phase in ("Succeeded", "Failed"):
        return Phase.FAILED
    if not spec.get("nodeName"):
        return Phase.PENDING
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return Phase.READY if phase == "Running" and ready else Phase.STARTING


def _toleration(t: Obj) -> Toleration:
    return Toleration(
        key=t.get("key", ""),
        operator=t.get("operator", "Equal"),
        value=t.get("value", ""),
        effect=t.get("effect", ""),
        toleration_seconds=t.get("tolerationSeconds"),
    )


def replica_from_pod(obj: Obj) -> Replica:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    owners = meta.get("ownerReferences") or []
    service = (
        labels.get("servingName")
        or labels.get("serving.kserve.io/inferenceservice")
        or (owners[0]["name"] if owners else meta["name"])
    )
    unit_text = annotations.get(UNIT_ANNOTATION)
    unit = int(unit_text) if unit_text is not None and unit_text.isdigit() else None
    return Replica(
        metadata=_meta(obj),
        spec=ReplicaSpec(
            service=service,
            requests=_as_quantities(pod_requests(spec)),
            tolerations=[_toleration(t) for t in spec.get("tolerations") or []],
            node_selector=dict(spec.get("nodeSelector") or {}),
        ),
        status=ReplicaStatus(
            phase=_phase(obj),
            node_name=spec.get("nodeName") or None,
            unit=unit,
            created_s=timestamp_s(meta.get("creationTimestamp")),
            scheduled_s=_scheduled_s(obj) if spec.get("nodeName") else None,
        ),
    )


def policy_from_k8s(obj: Obj) -> ResourcePolicy:
    """A ResourcePolicy custom object (either group) as the typed model; raises pydantic's
    ValidationError when the spec passed the CRD schema but not the model."""
    return ResourcePolicy.model_validate(
        {
            "apiVersion": obj["apiVersion"],
            "kind": "ResourcePolicy",
            "metadata": _meta(obj).model_dump(by_alias=True, exclude_none=True),
            "spec": obj.get("spec") or {},
        }
    )


__all__ = [
    "COLD_START_ANNOTATION",
    "POLICY_ANNOTATION",
    "PRICE_ANNOTATION",
    "UNIT_ANNOTATION",
    "is_virtual",
    "node_from_k8s",
    "pod_requests",
    "policy_from_k8s",
    "replica_from_pod",
    "timestamp_s",
]
