"""The Kubernetes HPA algorithm, pure: spec + pods + state + ``now_s`` in, decision out.

Follows ``pkg/controller/podautoscaler`` (``replica_calculator.go`` and
``horizontal.go``) for ``type: Pods`` metrics with an ``averageValue`` target.

Where this differs from a plain reading of "missing pods count as 0 on
scale-up and as target on scale-down; not-ready and pending pods count as 0 on
scale-up", it is because Kubernetes does so:

- Only ``Pending`` pods are treated as unready for a ``Pods`` metric. A
  ``Running`` pod whose readiness probe fails still counts with its sample
  (readiness and start time matter only for CPU ``Resource`` metrics).
- Deleting and ``Failed`` pods are dropped entirely, samples included.
- The event reason names the metric as Kubernetes does:
  ``pods metric DCGM_CUSTOM_PROCESS_SM_UTIL above target``.
- With ``behavior`` absent, Kubernetes does not use the ``behavior`` defaults:
  scale-up is capped at ``max(2 * current, 4)`` per decision and scale-down is
  stabilized over the controller's 300 s window. ``Behavior()`` gets the
  ``behavior`` defaults (up: max of 4 pods / 100 % per 15 s; down: 300 s, 100 % per 15 s).
- When some metrics fail and the others would scale down, nothing changes.
"""

from tierserve.policy.hpa.behavior import SCALE_UP_LIMIT_FACTOR, SCALE_UP_LIMIT_MINIMUM
from tierserve.policy.hpa.calculator import (
    MetricError,
    MetricProposal,
    Tolerances,
    pods_metric_replicas,
)
from tierserve.policy.hpa.decide import (
    ALL_BELOW,
    Condition,
    ConditionType,
    HPADecision,
    decide,
    event_message,
)
from tierserve.policy.hpa.spec import (
    DEFAULT_SCALE_DOWN_RULES,
    DEFAULT_SCALE_UP_RULES,
    Behavior,
    HPAControllerConfig,
    HPASpec,
    HPAState,
    MetricSpec,
    MetricType,
    PodPhase,
    PodSample,
    PolicyType,
    Recommendation,
    Rules,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    resolve_behavior,
)

__all__ = [
    "ALL_BELOW",
    "DEFAULT_SCALE_DOWN_RULES",
    "DEFAULT_SCALE_UP_RULES",
    "SCALE_UP_LIMIT_FACTOR",
    "SCALE_UP_LIMIT_MINIMUM",
    "Behavior",
    "Condition",
    "ConditionType",
    "HPAControllerConfig",
    "HPADecision",
    "HPASpec",
    "HPAState",
    "MetricError",
    "MetricProposal",
    "MetricSpec",
    "MetricType",
    "PodPhase",
    "PodSample",
    "PolicyType",
    "Recommendation",
    "Rules",
    "ScaleEvent",
    "ScalingPolicy",
    "ScalingRules",
    "SelectPolicy",
    "Tolerances",
    "decide",
    "event_message",
    "pods_metric_replicas",
    "resolve_behavior",
]
