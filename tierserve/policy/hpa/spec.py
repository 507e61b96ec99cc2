"""What an HPA is asked to do, what it sees, and what it remembers.

Everything here is a frozen value. Field names follow ``autoscaling/v2``
``HorizontalPodAutoscaler``; times are seconds as floats (``_s``) on whatever
clock the caller uses, as long as it is one clock.

Defaults and where they come from (Kubernetes ``pkg/apis/autoscaling/v2/defaults.go``
and the kube-controller-manager flags):

- ``HPAControllerConfig.tolerance = 0.1``: ``--horizontal-pod-autoscaler-tolerance``.
- ``HPAControllerConfig.downscale_stabilization_window_s = 300``:
  ``--horizontal-pod-autoscaler-downscale-stabilization``; used when ``behavior`` is
  absent and when ``behavior.scale_down`` leaves ``stabilization_window_s`` unset.
- ``DEFAULT_SCALE_UP_RULES``: window 0 s, ``Max`` of ``Pods 4 / 15 s`` and
  ``Percent 100 / 15 s``.
- ``DEFAULT_SCALE_DOWN_RULES``: window from the flag above, ``Max`` of
  ``Percent 100 / 15 s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from tierserve.errors import FieldError, ValidationError

#: Kubernetes validation bounds (``pkg/apis/autoscaling/validation``).
MAX_PERIOD_S = 1800.0
MAX_STABILIZATION_WINDOW_S = 3600.0


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class MetricType(StrEnum):
    """Metric source types supported. Only per-pod ``Pods`` (``averageValue``) for now."""

    PODS = "Pods"


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


def _check(subject: str, errors: list[FieldError]) -> None:
    if errors:
        raise ValidationError(subject, errors)


@dataclass(frozen=True)
class MetricSpec:
    """A ``type: Pods`` metric with an ``averageValue`` target, e.g. SM utilisation 50."""

    name: str
    target_average_value: float
    type: MetricType = MetricType.PODS

    def __post_init__(self) -> None:
        errors = []
        if not self.name:
            errors.append(FieldError("metric.name", "got '', expected a metric name"))
        if not self.target_average_value > 0:
            errors.append(
                FieldError(
                    "target.averageValue",
                    f"got {self.target_average_value!r}, expected a number > 0",
                )
            )
        _check(f"metric {self.name!r}", errors)

    @property
    def description(self) -> str:
        """How Kubernetes names the metric in events: ``pods metric <name>``."""
        return f"pods metric {self.name}"


@dataclass(frozen=True)
class PodSample:
    """One pod selected by the scale target, with the per-pod metrics seen for it.

    A metric name absent from ``metrics`` is a *missing* metric. ``ready`` and
    ``start_time_s`` are carried for completeness: Kubernetes consults readiness
    only for CPU ``Resource`` metrics, never for ``Pods`` metrics, so they do not
    change the result here.
    """

    name: str
    phase: PodPhase = PodPhase.RUNNING
    ready: bool = True
    deleting: bool = False
    start_time_s: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScalingPolicy:
    """Allow at most ``value`` pods (``Pods``) or percent (``Percent``) change per ``period_s``."""

    type: PolicyType
    value: int
    period_s: float

    def __post_init__(self) -> None:
        errors = []
        if self.value <= 0:
            errors.append(FieldError("value", f"got {self.value!r}, expected an integer > 0"))
        if not 0 < self.period_s <= MAX_PERIOD_S:
            errors.append(
                FieldError("periodSeconds", f"got {self.period_s!r}, expected 0 < s <= 1800")
            )
        _check("scaling policy", errors)


@dataclass(frozen=True)
class ScalingRules:
    """``HPAScalingRules``; a field left ``None`` takes the default for its direction."""

    stabilization_window_s: float | None = None
    select_policy: SelectPolicy | None = None
    policies: tuple[ScalingPolicy, ...] | None = None
    #: Per-direction tolerance (``HPAScalingRules.tolerance``, Kubernetes 1.33+).
    tolerance: float | None = None

    def __post_init__(self) -> None:
        errors = []
        w = self.stabilization_window_s
        if w is not None and not 0 <= w <= MAX_STABILIZATION_WINDOW_S:
            errors.append(
                FieldError("stabilizationWindowSeconds", f"got {w!r}, expected 0 <= s <= 3600")
            )
        if self.policies is not None and not self.policies:
            errors.append(FieldError("policies", "got [], expected at least one policy"))
        if self.tolerance is not None and self.tolerance < 0:
            errors.append(FieldError("tolerance", f"got {self.tolerance!r}, expected >= 0"))
        _check("scaling rules", errors)


@dataclass(frozen=True)
class Behavior:
    """``spec.behavior``; a direction left ``None`` takes that direction's defaults."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


DEFAULT_SCALE_UP_RULES = ScalingRules(
    stabilization_window_s=0.0,
    select_policy=SelectPolicy.MAX,
    policies=(
        ScalingPolicy(PolicyType.PODS, 4, 15.0),
        ScalingPolicy(PolicyType.PERCENT, 100, 15.0),
    ),
)
DEFAULT_SCALE_DOWN_RULES = ScalingRules(
    stabilization_window_s=None,  # the controller flag, 300 s unless configured
    select_policy=SelectPolicy.MAX,
    policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15.0),),
)


@dataclass(frozen=True)
class HPASpec:
    """``spec`` of an ``autoscaling/v2`` HPA: bounds, metrics (max wins), optional behavior.

    With ``behavior=None`` Kubernetes does *not* apply the ``behavior`` defaults:
    it keeps its older rule (scale-down stabilization over the controller window,
    scale-up capped at ``max(2 * current, 4)`` per decision). Pass
    ``Behavior()`` to get the ``behavior`` defaults instead.
    """

    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    min_replicas: int = 1
    behavior: Behavior | None = None

    def __post_init__(self) -> None:
        errors = []
        if self.min_replicas < 0:
            errors.append(
                FieldError("minReplicas", f"got {self.min_replicas!r}, expected an integer >= 0")
            )
        if self.max_replicas < 1:
            errors.append(
                FieldError("maxReplicas", f"got {self.max_replicas!r}, expected an integer >= 1")
            )
        elif self.max_replicas < self.min_replicas:
            errors.append(
                FieldError(
                    "maxReplicas",
                    f"got {self.max_replicas!r}, expected >= minReplicas ({self.min_replicas})",
                )
            )
        if not self.metrics:
            errors.append(FieldError("metrics", "got [], expected at least one metric"))
        _check("HPA spec", errors)


@dataclass(frozen=True)
class HPAControllerConfig:
    """Controller-wide settings (kube-controller-manager flags), not per-HPA spec."""

    tolerance: float = 0.1
    downscale_stabilization_window_s: float = 300.0


@dataclass(frozen=True)
class Recommendation:
    """An unstabilized recommendation, as the controller keeps it for stabilization."""

    timestamp_s: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A past rescale: ``replica_change`` is its absolute size (never negative)."""

    timestamp_s: float
    replica_change: int
    #: Older than the longest policy period when last looked at; the slot is reused.
    outdated: bool = False


@dataclass(frozen=True)
class HPAState:
    """What the controller remembers between decisions for one HPA (serialisable:
    :meth:`to_json` / :meth:`from_json`, so a restart carries it)."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()

    def to_json(self) -> dict[str, list[list[float]]]:
        """Plain JSON: ``[timestamp_s, replicas]`` / ``[timestamp_s, change, outdated]``."""
        return {
            "recommendations": [[r.timestamp_s, r.replicas] for r in self.recommendations],
            "scaleUpEvents": [_event_json(e) for e in self.scale_up_events],
            "scaleDownEvents": [_event_json(e) for e in self.scale_down_events],
        }

    @classmethod
    def from_json(cls, value: object) -> HPAState:
        """The state :meth:`to_json` wrote; anything malformed reads as a fresh state."""
        if not isinstance(value, dict):
            return cls()
        try:
            return cls(
                recommendations=tuple(
                    Recommendation(float(t), int(n)) for t, n in value.get("recommendations", ())
                ),
                scale_up_events=tuple(_event(e) for e in value.get("scaleUpEvents", ())),
                scale_down_events=tuple(_event(e) for e in value.get("scaleDownEvents", ())),
            )
        except (TypeError, ValueError):
            return cls()


def _event_json(event: ScaleEvent) -> list[float]:
    return [event.timestamp_s, event.replica_change, 1 if event.outdated else 0]


def _event(value: list[float]) -> ScaleEvent:
    timestamp, change, outdated = value
    return ScaleEvent(float(timestamp), int(change), bool(outdated))


@dataclass(frozen=True)
class Rules:
    """``ScalingRules`` with every default filled in."""

    stabilization_window_s: float
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float


def _fill(rules: ScalingRules | None, default: ScalingRules, window_s: float, tol: float) -> Rules:
    given = rules or ScalingRules()
    window = given.stabilization_window_s
    if window is None:
        window = default.stabilization_window_s
    return Rules(
        stabilization_window_s=window if window is not None else window_s,
        select_policy=given.select_policy or default.select_policy or SelectPolicy.MAX,
        policies=given.policies or default.policies or (),
        tolerance=given.tolerance if given.tolerance is not None else tol,
    )


def resolve_behavior(behavior: Behavior, config: HPAControllerConfig) -> tuple[Rules, Rules]:
    """Fill unset fields like ``GenerateHPAScale{Up,Down}Rules``; returns (scale-up, scale-down)."""
    up = _fill(behavior.scale_up, DEFAULT_SCALE_UP_RULES, 0.0, config.tolerance)
    down = _fill(
        behavior.scale_down,
        DEFAULT_SCALE_DOWN_RULES,
        config.downscale_stabilization_window_s,
        config.tolerance,
    )
    return up, down
