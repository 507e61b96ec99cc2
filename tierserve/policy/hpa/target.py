"""A service's HPA, the same on every body, and its replicas as the HPA sees them.

:func:`hpa_spec_for` is the one derivation of an InferenceService's HPA: the local
autoscaler, the simulator and the Kubernetes manifests (``autoscaling/v2``) all use it,
so a service scales the same everywhere.

- No scale metric, or no ``maxReplicas``: the service does not autoscale (None); it
  keeps ``spec.replicas``. (arena needs ``--max-replicas`` for an HPA too.)
- ``minReplicas`` defaults to 1, the HPA's own default, and is at least 1 (scaling to
  zero is an alpha feature gate in Kubernetes); ``maxReplicas`` is at least the min.

Replica phases map to pod phases the way the HPA sees them: Pending/Provisioning are
``Pending`` (no runaway scale-out during a cold start: on scale-up they count as 0, else
they are left out), Starting/Ready are ``Running`` (a Starting one has no metric yet:
*missing*), Terminating is deleting, Failed is ``Failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tierserve.model import InferenceService, Phase, Replica
from tierserve.policy.hpa.spec import HPASpec, MetricSpec, PodPhase, PodSample

POD_PHASE = {
    Phase.PENDING: PodPhase.PENDING,
    Phase.PROVISIONING: PodPhase.PENDING,
    Phase.STARTING: PodPhase.RUNNING,
    Phase.READY: PodPhase.RUNNING,
    Phase.TERMINATING: PodPhase.RUNNING,
    Phase.FAILED: PodPhase.FAILED,
}


def hpa_spec_for(service: InferenceService) -> HPASpec | None:
    """The service's HPA, or None when it does not autoscale (see the module doc)."""
    metrics = service.scale_metrics()
    spec = service.spec
    if not metrics or spec.max_replicas is None:
        return None
    low = max(spec.min_replicas if spec.min_replicas is not None else 1, 1)
    return HPASpec(
        min_replicas=low,
        max_replicas=max(spec.max_replicas, low),
        metrics=tuple(MetricSpec(name=m.name, target_average_value=m.target) for m in metrics),
    )


def pod_samples(
    replicas: Iterable[Replica],
    spec: HPASpec,
    metrics: Mapping[str, Mapping[str, float]],
) -> list[PodSample]:
    """The service's replicas as HPA pod samples; ``metrics``: fresh values by replica
    name (a stale or missing value is left out: *missing*). Only Ready replicas report."""
    out = []
    for r in replicas:
        values: dict[str, float] = {}
        if r.ready:
            mine = metrics.get(r.name, {})
            values = {m.name: mine[m.name] for m in spec.metrics if m.name in mine}
        out.append(
            PodSample(
                name=r.name,
                phase=POD_PHASE[r.phase],
                ready=r.ready,
                deleting=r.terminating,
                start_time_s=r.status.started_s,
                metrics=values,
            )
        )
    return out
