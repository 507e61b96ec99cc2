"""The autoscaler of every body: one service, one period, one decision.

``evaluate(service, replicas, metrics, state, now, config)`` is what the local
autoscaler, the simulator and tierserve's Kubernetes autoscaler call for a service
every ``period_s`` (Kubernetes' ``--horizontal-pod-autoscaler-sync-period``; 15 s
there, 5 s by default here). It picks the service's autoscaler by name from
:data:`AUTOSCALERS` — today ``hpa``, the Kubernetes HPA algorithm on per-replica
metrics (``policy.hpa``) — and returns an :class:`Evaluation`: the size it wants, its
state to keep (plain JSON, kept with the rescale in one transaction so a restart keeps
the stabilization window) and, when the size changes, the event message in
Kubernetes' words (``New size: 3; reason: pods metric DCGM_CUSTOM_PROCESS_SM_UTIL above
target``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tierserve.model import InferenceService, Replica
from tierserve.policy.hpa import HPAControllerConfig, HPAState, decide, event_message
from tierserve.policy.hpa.target import hpa_spec_for, pod_samples

HPA = "hpa"


@dataclass(frozen=True)
class AutoscalerConfig:
    """Controller-wide settings of the autoscaler (the same on every body)."""

    period_s: float = 5.0
    """How often each service is evaluated (Kubernetes: 15 s)."""
    tolerance: float = 0.1
    downscale_stabilization_s: float = 300.0
    """Kubernetes' --horizontal-pod-autoscaler-downscale-stabilization (5 min)."""
    metric_max_age_s: float = 30.0
    """A sample older than this counts as missing."""


@dataclass(frozen=True)
class Evaluation:
    """One service's decision: ``desired`` replicas, ``state`` to keep, and ``message``
    (the ``SuccessfulRescale`` event) when ``desired`` differs from the current size."""

    service: InferenceService
    policy: str
    desired: int
    state: Any
    message: str | None


Autoscaler = Callable[
    [
        InferenceService,
        Sequence[Replica],
        Mapping[str, Mapping[str, float]],
        Any,
        float,
        AutoscalerConfig,
    ],
    Evaluation | None,
]


def due(last_s: float | None, now: float, config: AutoscalerConfig) -> bool:
    """Whether a service last evaluated at ``last_s`` is evaluated again at ``now``."""
    return last_s is None or now - last_s >= config.period_s


def mine(service: InferenceService, replicas: Sequence[Replica]) -> list[Replica]:
    return [
        r for r in replicas if r.namespace == service.namespace and r.spec.service == service.name
    ]


def hpa(
    service: InferenceService,
    replicas: Sequence[Replica],
    metrics: Mapping[str, Mapping[str, float]],
    state: Any,
    now: float,
    config: AutoscalerConfig,
) -> Evaluation | None:
    """The Kubernetes HPA on the service's scale metrics (None: it does not autoscale).
    ``metrics``: fresh values by replica name; ``state``: what the last evaluation kept."""
    spec = hpa_spec_for(service)
    if spec is None:
        return None
    controller = HPAControllerConfig(
        tolerance=config.tolerance,
        downscale_stabilization_window_s=config.downscale_stabilization_s,
    )
    samples = pod_samples(mine(service, replicas), spec, metrics)
    decision = decide(
        spec, service.spec.replicas, samples, HPAState.from_json(state), now, controller
    )
    return Evaluation(
        service, HPA, decision.desired_replicas, decision.state.to_json(), event_message(decision)
    )


AUTOSCALERS: Mapping[str, Autoscaler] = {HPA: hpa}
"""Every autoscaler ``policy/`` offers, by the name a service or a simulation selects."""


def evaluate(
    service: InferenceService,
    replicas: Sequence[Replica],
    metrics: Mapping[str, Mapping[str, float]],
    state: Any,
    now: float,
    config: AutoscalerConfig,
    policy: str = HPA,
) -> Evaluation | None:
    """The named autoscaler's decision for ``service`` (None: it does not autoscale)."""
    return AUTOSCALERS[policy](service, replicas, metrics, state, now, config)
