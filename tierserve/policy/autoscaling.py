"""The autoscaler of every body: one service, one period, one decision.

``evaluate(service, replicas, metrics, state, now, config)`` is what the local
autoscaler, the simulator and tierserve's Kubernetes autoscaler call for a service
every ``period_s`` (Kubernetes' ``--horizontal-pod-autoscaler-sync-period``; 15 s
there, 5 s by default here). It picks the service's autoscaler by name from
:data:`AUTOSCALERS` — ``hpa``, the Kubernetes HPA algorithm on per-replica metrics
(``policy.hpa``, the default), or ``slo``, the tier planner (``policy.planner``: SLO,
tier capacity, cold starts, prices, budget; it needs a :class:`PlannerContext` from
the body) — and returns an :class:`Evaluation`: the size it wants, its
state to keep (plain JSON, kept with the rescale in one transaction so a restart keeps
the stabilization window) and, when the size changes, the event message in
Kubernetes' words (``New size: 3; reason: pods metric DCGM_CUSTOM_PROCESS_SM_UTIL above
target``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tierserve.model import InferenceService, Replica
from tierserve.model.autoscaling import SLO
from tierserve.policy.hpa import HPAControllerConfig, HPAState, decide, event_message
from tierserve.policy.hpa.target import hpa_spec_for, pod_samples
from tierserve.policy.planner import (
    CapacityAt,
    Load,
    Plan,
    PlannerConfig,
    PlannerState,
    Tier,
    plan,
)

HPA = "hpa"
PLANNER_MAX_REPLICAS = 10
"""The tier planner's ``maxReplicas`` when the service sets none."""


@dataclass(frozen=True)
class PlannerContext:
    """What the tier planner reads beside the replicas: the load the gateway saw, the
    tiers (``policy.tiers.tiers_for``) and one replica's capacity at the SLO for the
    load's token mix (the engine's performance model, before online correction: a rate,
    or the rate as a function of the correction, ``policy.planner.CapacityAt``)."""

    load: Load
    tiers: tuple[Tier, ...]
    capacity: float | CapacityAt
    now: float | None = None
    """The planner's clock when it is not the body's (emulated seconds under an emulator
    time scale, where the load, latencies and cold starts are emulated too)."""


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
    plan: Plan | None = None
    """The tier planner's plan (inputs, forecast, per-tier target, cost, reason)."""


Autoscaler = Callable[
    [
        InferenceService,
        Sequence[Replica],
        Mapping[str, Mapping[str, float]],
        Any,
        float,
        AutoscalerConfig,
        "PlannerContext | None",
    ],
    Evaluation | None,
]


def due(last_s: float | None, now: float, config: AutoscalerConfig) -> bool:
    """Whether a service last evaluated at ``last_s`` is evaluated again at ``now``
    (a microsecond early counts: times summed from ticks carry rounding errors)."""
    return last_s is None or now - last_s >= config.period_s - 1e-6


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
    context: PlannerContext | None = None,
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


def slo(
    service: InferenceService,
    replicas: Sequence[Replica],
    metrics: Mapping[str, Mapping[str, float]],
    state: Any,
    now: float,
    config: AutoscalerConfig,
    context: PlannerContext | None = None,
) -> Evaluation | None:
    """The tier planner (None: the service has no ``autoscaling.slo``); without a
    context (nothing measured yet) it keeps the size."""
    spec = service.spec.autoscaling
    if spec is None or spec.slo is None:
        return None
    current = service.spec.replicas
    if context is None:
        return Evaluation(service, SLO, current, state, None)
    low = max(service.spec.min_replicas if service.spec.min_replicas is not None else 1, 0)
    high = service.spec.max_replicas or max(PLANNER_MAX_REPLICAS, low)
    planner = PlannerConfig(
        slo=spec.slo,
        min_replicas=low,
        max_replicas=max(high, low),
        headroom=spec.headroom,
        cloud_cost_per_hour=spec.budget.cloud_cost_per_hour if spec.budget else None,
    )
    decided = plan(
        planner,
        context.load,
        context.tiers,
        context.capacity,
        current,
        PlannerState.from_json(state),
        context.now if context.now is not None else now,
    )
    return Evaluation(
        service, SLO, decided.desired, decided.state.to_json(), decided.message(current), decided
    )


ORACLE = "oracle"


def oracle(
    service: InferenceService,
    replicas: Sequence[Replica],
    metrics: Mapping[str, Mapping[str, float]],
    state: Any,
    now: float,
    config: AutoscalerConfig,
    context: PlannerContext | None = None,
) -> Evaluation | None:
    """The clairvoyant lower bound, for the simulator: the tier planner's arithmetic
    (capacity, tiers, cold starts, budget) on the load that *will* come — the context's
    ``load.rate`` is the highest future rate over the cold-start horizon, which only a
    simulator knows — with no forecast error and no breach to react to."""
    if context is None:
        return slo(service, replicas, metrics, state, now, config, None)
    clock = context.now if context.now is not None else now
    known = PlannerState(level=context.load.rate, trend_per_s=0.0, at_s=clock)
    load = replace(context.load, recent_rate=None, ttft_s=None, tpot_s=None)
    exact = replace(context, load=load)
    evaluation = slo(service, replicas, metrics, known.to_json(), now, config, exact)
    return None if evaluation is None else replace(evaluation, policy=ORACLE)


AUTOSCALERS: Mapping[str, Autoscaler] = {HPA: hpa, SLO: slo, ORACLE: oracle}
"""Every autoscaler ``policy/`` offers, by the name a service or a simulation selects."""


def evaluate(
    service: InferenceService,
    replicas: Sequence[Replica],
    metrics: Mapping[str, Mapping[str, float]],
    state: Any,
    now: float,
    config: AutoscalerConfig,
    policy: str | None = None,
    context: PlannerContext | None = None,
) -> Evaluation | None:
    """The named autoscaler's decision for ``service`` (None: it does not autoscale);
    ``policy`` None: the service's own (``spec.autoscaling.policy``, default ``hpa``)."""
    name = policy if policy is not None else policy_of(service)
    return AUTOSCALERS[name](service, replicas, metrics, state, now, config, context)


def policy_of(service: InferenceService) -> str:
    """The autoscaler the service asks for."""
    spec = service.spec.autoscaling
    return spec.policy if spec is not None else HPA
