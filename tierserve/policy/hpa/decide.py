"""One HPA decision: Kubernetes' ``reconcileAutoscaler`` without the I/O.

``decide`` takes the HPA spec, the target's current replica count
(``scale.spec.replicas``), the pods it selects with their metric samples, the
state returned by the previous call and ``now_s``; it returns the new replica
count, the new state and every reason as data. The caller applies the change
and, when ``changed``, records the event ``event_message(decision)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from tierserve.policy.hpa.behavior import (
    longest_period_s,
    normalize_legacy,
    normalize_with_behaviors,
    store_scale_event,
)
from tierserve.policy.hpa.calculator import (
    MetricError,
    MetricProposal,
    Tolerances,
    pods_metric_replicas,
)
from tierserve.policy.hpa.spec import (
    HPAControllerConfig,
    HPASpec,
    HPAState,
    PodSample,
    Recommendation,
    Rules,
    resolve_behavior,
)

ABOVE_MAX = "Current number of replicas above Spec.MaxReplicas"
BELOW_MIN = "Current number of replicas below Spec.MinReplicas"
ALL_BELOW = "All metrics below target"


class ConditionType(StrEnum):
    ABLE_TO_SCALE = "AbleToScale"
    SCALING_ACTIVE = "ScalingActive"
    SCALING_LIMITED = "ScalingLimited"


@dataclass(frozen=True)
class Condition:
    """An HPA status condition as Kubernetes would set it in this decision."""

    type: ConditionType
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class HPADecision:
    """The outcome of one decision; ``desired_replicas == current_replicas`` when unchanged."""

    desired_replicas: int
    current_replicas: int
    changed: bool
    #: Kubernetes' rescale reason: ``pods metric X above target``, ``All metrics below
    #: target``, ``Current number of replicas above Spec.MaxReplicas``, ... or ``""``.
    reason: str
    state: HPAState
    #: One entry per ``spec.metrics`` item, in order.
    metrics: tuple[MetricProposal | MetricError, ...] = ()
    #: The largest metric proposal, before stabilization and limits; ``None`` if not computed.
    recommended_replicas: int | None = None
    #: The recommendation after stabilization, before rate limits and min/max.
    stabilized_replicas: int | None = None
    conditions: tuple[Condition, ...] = ()
    #: Kubernetes' ``invalid metrics (n invalid out of m), first error is: ...``.
    error: str | None = None

    def condition(self, type: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is type), None)

    @property
    def limit(self) -> str | None:
        """The ``ScalingLimited`` reason, e.g. ``ScaleUpLimit`` or ``DesiredWithinRange``."""
        c = self.condition(ConditionType.SCALING_LIMITED)
        return c.reason if c else None

    @property
    def stabilization(self) -> str | None:
        """``ReadyForNewScale``, ``ScaleUpStabilized`` or ``ScaleDownStabilized`` when computed."""
        c = self.condition(ConditionType.ABLE_TO_SCALE)
        return c.reason if c and c.reason != "SucceededGetScale" else None


def event_message(decision: HPADecision) -> str | None:
    """The ``SuccessfulRescale`` event text, ``New size: 3; reason: ...``; ``None`` if unchanged."""
    if not decision.changed:
        return None
    return f"New size: {decision.desired_replicas}; reason: {decision.reason}"


_GOT_SCALE = Condition(
    ConditionType.ABLE_TO_SCALE,
    True,
    "SucceededGetScale",
    "the HPA controller was able to get the target's current scale",
)


def decide(
    spec: HPASpec,
    current_replicas: int,
    pods: Sequence[PodSample],
    state: HPAState,
    now_s: float,
    config: HPAControllerConfig | None = None,
) -> HPADecision:
    """Decide the replica count for one HPA at ``now_s`` (seconds, caller's clock).

    Follows ``reconcileAutoscaler``: a target at 0 replicas with ``min_replicas``
    above 0 is left alone (``ScalingDisabled``); a count outside ``[min, max]`` is
    brought back inside; otherwise each metric proposes a count, the largest wins,
    and stabilization and rate limits apply. If every metric fails, or some fail
    and the rest would scale down, the count is kept and the errors are reported.
    """
    config = config or HPAControllerConfig()
    current = current_replicas
    # (scale-up, scale-down) rules; None without ``behavior`` (the legacy rules apply).
    rules = resolve_behavior(spec.behavior, config) if spec.behavior is not None else None
    # recordInitialRecommendation: the first decision remembers the current count.
    if not state.recommendations:
        state = replace(state, recommendations=(Recommendation(now_s, current),))

    if current == 0 and spec.min_replicas != 0:
        disabled = Condition(
            ConditionType.SCALING_ACTIVE,
            False,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        )
        return HPADecision(0, 0, False, "", state, conditions=(_GOT_SCALE, disabled))
    if current > spec.max_replicas:
        return _rescale(current, spec.max_replicas, ABOVE_MAX, state, now_s, rules)
    if current < spec.min_replicas:
        return _rescale(current, spec.min_replicas, BELOW_MIN, state, now_s, rules)

    if rules is None:
        tolerances = Tolerances(config.tolerance, config.tolerance)
    else:
        tolerances = Tolerances(scale_down=rules[1].tolerance, scale_up=rules[0].tolerance)
    results = tuple(pods_metric_replicas(m, current, pods, tolerances) for m in spec.metrics)

    # computeReplicasForMetrics: the largest valid proposal wins.
    proposed, metric_name = 0, ""
    errors = [r for r in results if isinstance(r, MetricError)]
    for r in results:
        if isinstance(r, MetricProposal) and (proposed == 0 or r.replicas > proposed):
            proposed, metric_name = r.replicas, r.description
    error = None
    if errors:
        error = (
            f"invalid metrics ({len(errors)} invalid out of {len(results)}), first error is: "
            f"failed to get pods metric value: {errors[0].message}"
        )
    if len(errors) == len(results) or (errors and proposed < current):
        inactive = Condition(
            ConditionType.SCALING_ACTIVE,
            False,
            errors[0].reason,
            f"the HPA was unable to compute the replica count: {errors[0].message}",
        )
        return HPADecision(
            desired_replicas=current,
            current_replicas=current,
            changed=False,
            reason="",
            state=state,
            metrics=results,
            conditions=(_GOT_SCALE, inactive),
            error=error,
        )
    active = Condition(
        ConditionType.SCALING_ACTIVE,
        True,
        "ValidMetricFound",
        f"the HPA was able to successfully calculate a replica count from {metric_name}",
    )

    reason = ""
    if proposed > current:
        reason = f"{metric_name} above target"
    elif proposed < current:
        reason = ALL_BELOW

    if rules is None:
        n = normalize_legacy(
            state.recommendations,
            current,
            proposed,
            spec.min_replicas,
            spec.max_replicas,
            config.downscale_stabilization_window_s,
            now_s,
        )
    else:
        n = normalize_with_behaviors(
            state.recommendations,
            state.scale_up_events,
            state.scale_down_events,
            current,
            proposed,
            spec.min_replicas,
            spec.max_replicas,
            rules[0],
            rules[1],
            now_s,
        )
    state = replace(state, recommendations=n.recommendations)
    conditions = (
        Condition(
            ConditionType.ABLE_TO_SCALE, True, n.stabilization_reason, n.stabilization_message
        ),
        active,
        Condition(
            ConditionType.SCALING_LIMITED,
            n.replicas != n.stabilized,
            n.limit_reason,
            n.limit_message,
        ),
    )
    changed = n.replicas != current
    if changed:
        state = _store_event(state, current, n.replicas, now_s, rules)
    return HPADecision(
        desired_replicas=n.replicas if changed else current,
        current_replicas=current,
        changed=changed,
        reason=reason,
        state=state,
        metrics=results,
        recommended_replicas=proposed,
        stabilized_replicas=n.stabilized,
        conditions=conditions,
        error=error,
    )


def _rescale(
    current: int,
    desired: int,
    reason: str,
    state: HPAState,
    now_s: float,
    rules: tuple[Rules, Rules] | None,
) -> HPADecision:
    state = _store_event(state, current, desired, now_s, rules)
    return HPADecision(desired, current, True, reason, state, conditions=(_GOT_SCALE,))


def _store_event(
    state: HPAState,
    current: int,
    desired: int,
    now_s: float,
    rules: tuple[Rules, Rules] | None,
) -> HPAState:
    """``storeScaleEvent``: only kept when ``behavior`` is set, since only it reads them."""
    if rules is None:
        return state
    up, down = rules
    if desired > current:
        events = store_scale_event(
            state.scale_up_events, desired - current, longest_period_s(up), now_s
        )
        return replace(state, scale_up_events=events)
    events = store_scale_event(
        state.scale_down_events, current - desired, longest_period_s(down), now_s
    )
    return replace(state, scale_down_events=events)
