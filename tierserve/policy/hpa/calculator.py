"""Replica proposal for one ``Pods`` metric: Kubernetes' ``calcPlainMetricReplicas``.

How pods are grouped (``groupPods``), for a ``Pods`` metric:

- deleting or ``Failed`` pods are *ignored*: neither counted nor their metrics used;
- ``Pending`` pods are *unready*: their metrics are dropped; on a scale-up they
  count as 0, on a scale-down they are left out;
- pods without a sample are *missing*: on a scale-up they count as 0, on a
  scale-down as exactly the target;
- every other pod is *ready*, including a ``Running`` pod whose readiness probe
  fails. Kubernetes checks readiness only for CPU ``Resource`` metrics.

Then ``desired = ceil(ratio * n)`` where ``ratio = average / target`` and ``n``
the number of pods that have a sample, unless ``ratio`` is within the tolerance.
If unready or missing pods were filled in, the ratio is recomputed over them and
the current count is kept when the new ratio is within tolerance or points the
other way, or when the new count would move against the ratio.

Values are integer milli-units, as Kubernetes' ``Quantity.MilliValue()`` (here
rounded to the nearest milli-unit), and the average is the integer quotient,
so ``(50 + 15 + 30) / 3`` is ``31.666`` exactly as Kubernetes reports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tierserve.policy.hpa.spec import MetricSpec, PodPhase, PodSample

FAILED_GET_PODS_METRIC = "FailedGetPodsMetric"


@dataclass(frozen=True)
class Tolerances:
    """Ratios in ``[1 - scale_down, 1 + scale_up]`` change nothing."""

    scale_down: float = 0.1
    scale_up: float = 0.1

    def is_within(self, usage_ratio: float) -> bool:
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


@dataclass(frozen=True)
class MetricProposal:
    """What one metric proposes and the numbers behind it."""

    metric: str
    #: Kubernetes' name for it in events and conditions: ``pods metric <name>``.
    description: str
    replicas: int
    #: Average over pods with a sample (before filling in missing/unready pods).
    current_average: float
    target: float
    usage_ratio: float
    ready_pods: int
    unready_pods: int
    missing_pods: int
    ignored_pods: int


@dataclass(frozen=True)
class MetricError:
    """A metric that could not be computed (Kubernetes' ``FailedGetPodsMetric``)."""

    metric: str
    reason: str
    message: str


def _milli(value: float) -> int:
    return round(value * 1000)


def _usage(values: Iterable[int], target_m: int) -> tuple[float, int]:
    """``GetMetricUsageRatio``: (ratio, average), the average an integer quotient."""
    vals = list(values)
    total = sum(vals)
    # Go's int64 division truncates toward zero.
    usage = abs(total) // len(vals) * (1 if total >= 0 else -1)
    return usage / target_m, usage


def pods_metric_replicas(
    metric: MetricSpec,
    current_replicas: int,
    pods: Sequence[PodSample],
    tolerances: Tolerances,
) -> MetricProposal | MetricError:
    """Propose a replica count for ``metric`` from ``pods``; an error is returned, not raised."""
    samples = {p.name: _milli(p.metrics[metric.name]) for p in pods if metric.name in p.metrics}
    if not samples:
        return MetricError(
            metric.name,
            FAILED_GET_PODS_METRIC,
            f"unable to get metric {metric.name}: no metrics returned from custom metrics API",
        )

    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase is PodPhase.FAILED:
            ignored.add(pod.name)
        elif pod.phase is PodPhase.PENDING:
            unready.add(pod.name)
        elif pod.name not in samples:
            missing.add(pod.name)
        else:
            ready += 1
    metrics = {n: v for n, v in samples.items() if n not in ignored and n not in unready}
    if not metrics:
        return MetricError(
            metric.name,
            FAILED_GET_PODS_METRIC,
            "did not receive metrics for targeted pods (pods might be unready)",
        )

    target_m = _milli(metric.target_average_value)
    ratio, usage = _usage(metrics.values(), target_m)

    def proposal(replicas: int) -> MetricProposal:
        return MetricProposal(
            metric=metric.name,
            description=metric.description,
            replicas=replicas,
            current_average=usage / 1000,
            target=metric.target_average_value,
            usage_ratio=ratio,
            ready_pods=ready,
            unready_pods=len(unready),
            missing_pods=len(missing),
            ignored_pods=len(ignored),
        )

    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if tolerances.is_within(ratio):
            return proposal(current_replicas)
        return proposal(math.ceil(ratio * ready))

    if missing:
        if ratio < 1.0:
            # On a scale-down, missing pods are taken to sit exactly at the target.
            metrics.update(dict.fromkeys(missing, target_m))
        elif ratio > 1.0:
            # On a scale-up, missing pods are taken to be idle.
            metrics.update(dict.fromkeys(missing, 0))
    if scale_up_with_unready:
        metrics.update(dict.fromkeys(unready, 0))

    new_ratio, _ = _usage(metrics.values(), target_m)
    if tolerances.is_within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return proposal(current_replicas)
    new_replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        return proposal(current_replicas)
    return proposal(new_replicas)
