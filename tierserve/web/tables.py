"""The dashboard's tables, from the model objects as they are now: a service's replicas,
its ResourcePolicy units with their fill, its autoscaler configuration; the nodes with
their GPUs. Pure: the caller passes ``now`` and what only it can measure (requests in
flight, a replica's TTFT)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tierserve.model import GPU, InferenceService, Node, Phase, Replica, ResourcePolicy
from tierserve.policy.autoscaling import AutoscalerConfig, policy_of
from tierserve.policy.units import recorded_unit, selects


def replica_price(replica: Replica, node: Node | None) -> float:
    """What the replica costs per hour while billed: its GPUs at the virtual node's
    price per GPU-hour (0 on an IDC node: owned GPUs are not billed)."""
    if node is None or node.spec.virtual is None:
        return 0.0
    return replica.spec.requests.get(GPU, 0) / 1000 * node.spec.virtual.price_per_gpu_hour


def pod_rows(
    replicas: Sequence[Replica],
    nodes: Mapping[str, Node],
    now: float,
    in_flight: Callable[[str], int],
    ttft_p50: Callable[[Replica], float | None],
) -> list[dict[str, Any]]:
    """A row per replica, oldest first."""
    rows = []
    for r in sorted(replicas, key=lambda r: r.status.created_s):
        node = nodes.get(r.node_name or "")
        billed = node is not None and node.virtual and r.status.scheduled_s is not None
        rows.append(
            {
                "name": r.name,
                "phase": r.phase.value,
                "ready": r.ready,
                "node": r.node_name or "",
                "tier": node.tier if node is not None else "",
                "unit": r.status.unit,
                "ageS": round(max(0.0, now - r.status.created_s), 1),
                "restarts": r.status.restarts,
                "inFlight": in_flight(r.name),
                "ttftP50": ttft_p50(r),
                "costPerHour": round(replica_price(r, node), 4) if billed else 0.0,
                "reason": r.status.reason,
                "message": r.status.message,
            }
        )
    return rows


def _selects_service(policy: ResourcePolicy, service: InferenceService) -> bool:
    """The policy would apply to the service's replicas (when it has none now)."""
    labels = {"app": f"isvc.{service.name}-predictor", **service.spec.labels}
    return policy.namespace == service.namespace and all(
        labels.get(k) == v for k, v in policy.spec.selector.items()
    )


def unit_rows(
    service: InferenceService, replicas: Sequence[Replica], policies: Sequence[ResourcePolicy]
) -> list[dict[str, Any]]:
    """The units of every ResourcePolicy that applies to the service, each with its fill
    (the service's replicas placed in it, Terminating ones not counted) against ``max``."""
    rows = []
    for policy in policies:
        members = [r for r in replicas if selects(policy, r)]
        if not members and not _selects_service(policy, service):
            continue
        for index, unit in enumerate(policy.spec.units):
            fill = sum(
                1 for r in members if not r.terminating and recorded_unit(policy, r) == index
            )
            rows.append(
                {
                    "policy": policy.name,
                    "index": index,
                    "resource": unit.resource,
                    "nodeSelector": dict(unit.node_selector),
                    "max": unit.max,
                    "fill": fill,
                }
            )
    return rows


def service_table(
    service: InferenceService,
    replicas: Sequence[Replica],
    nodes: Mapping[str, Node],
    policies: Sequence[ResourcePolicy],
    now: float,
    in_flight: Callable[[str], int],
    ttft_p50: Callable[[Replica], float | None],
    autoscaler: AutoscalerConfig,
) -> dict[str, Any]:
    """The service detail: its SLO, autoscaler, replicas and units."""
    spec = service.spec
    auto = spec.autoscaling
    plan = service.status.autoscaler
    slo = auto.slo if auto is not None else None
    budget = auto.budget if auto is not None else None
    return {
        "namespace": service.namespace,
        "name": service.name,
        "host": f"{service.name}-{service.namespace}.example.com",
        "replicas": spec.replicas,
        "ready": sum(r.ready for r in replicas),
        "slo": (
            {
                "ttftSeconds": slo.ttft_seconds,
                "tpotSeconds": slo.tpot_seconds,
                "attainment": slo.attainment,
            }
            if slo is not None
            else None
        ),
        "autoscaler": {
            "policy": policy_of(service),
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "scaleMetric": spec.scale_metric,
            "scaleTarget": spec.scale_target,
            "metrics": [{"name": m.name, "target": m.target} for m in spec.metrics],
            "budgetPerHour": budget.cloud_cost_per_hour if budget is not None else None,
            "periodS": autoscaler.period_s,
            "downscaleStabilizationS": autoscaler.downscale_stabilization_s,
            "lastPlan": plan.model_dump(by_alias=True, mode="json") if plan else None,
        },
        "pods": pod_rows(replicas, nodes, now, in_flight, ttft_p50),
        "units": unit_rows(service, replicas, policies),
    }


def node_rows(nodes: Mapping[str, Node], replicas: Sequence[Replica]) -> list[dict[str, Any]]:
    """A row per node: its GPUs used (by the replicas placed on it, Terminating ones still
    holding theirs) and free, tier, price, quota, cold start, and the replicas."""
    rows = []
    for node in nodes.values():
        on = [r for r in replicas if r.node_name == node.name and r.phase != Phase.PENDING]
        used = sum(r.spec.requests.get(GPU, 0) for r in on) / 1000
        total = node.allocatable().get(GPU, 0) / 1000
        virtual = node.spec.virtual
        rows.append(
            {
                "name": node.name,
                "tier": node.tier,
                "gpuModel": node.spec.gpu.model if node.spec.gpu is not None else None,
                "gpus": total,
                "gpusUsed": used,
                "gpusFree": max(0.0, total - used),
                "pricePerGpuHour": virtual.price_per_gpu_hour if virtual else None,
                "gpuQuota": virtual.gpu_quota if virtual else None,
                "coldStartS": virtual.cold_start_seconds if virtual else None,
                "replicas": [
                    {
                        "name": r.name,
                        "service": r.spec.service,
                        "namespace": r.namespace,
                        "phase": r.phase.value,
                        "gpus": list(r.status.gpus),
                    }
                    for r in on
                ],
            }
        )
    return rows
