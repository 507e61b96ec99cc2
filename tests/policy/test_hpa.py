"""HPA replica calculation and decision, mirroring Kubernetes' replica_calculator_test.go.

Kubernetes' cases are in milli-units (``levels: 20000`` is 20); the names in
comments are the Go test functions they mirror. Pods-metric rules: Pending pods
count as 0 on scale-up and are left out otherwise; missing pods count as 0 on
scale-up and as the target on scale-down; Running-but-unready pods count as they
are (readiness matters only for CPU).
"""

from __future__ import annotations

import pytest

from tierserve.errors import ValidationError
from tierserve.policy.hpa import (
    ConditionType,
    HPAControllerConfig,
    HPASpec,
    HPAState,
    MetricError,
    MetricProposal,
    MetricSpec,
    PodPhase,
    PodSample,
    Tolerances,
    decide,
    event_message,
    pods_metric_replicas,
)

SM = "DCGM_CUSTOM_PROCESS_SM_UTIL"
QPS = "qps"
P, F = PodPhase.PENDING, PodPhase.FAILED


def pod(
    i: int,
    value: float | None,
    phase: PodPhase = PodPhase.RUNNING,
    *,
    ready: bool = True,
    deleting: bool = False,
    metric: str = QPS,
) -> PodSample:
    metrics = {} if value is None else {metric: value}
    return PodSample(f"pod-{i}", phase, ready, deleting, None, metrics)


def pods_of(*specs: float | tuple[float | None, str] | None) -> tuple[PodSample, ...]:
    """``30`` a Running ready pod at 30; ``None`` missing; ``(30, "P")`` Pending,
    ``"F"`` Failed, ``"D"`` deleting, ``"U"`` Running but not ready."""
    out = []
    for i, s in enumerate(specs):
        value, flag = s if isinstance(s, tuple) else (s, "")
        phase = {"P": P, "F": F}.get(flag, PodPhase.RUNNING)
        out.append(pod(i, value, phase, ready=flag != "U", deleting=flag == "D"))
    return tuple(out)


def propose(current: int, target: float, pods: tuple[PodSample, ...]) -> MetricProposal:
    result = pods_metric_replicas(MetricSpec(QPS, target), current, pods, Tolerances())
    assert isinstance(result, MetricProposal), result
    return result


# (name, current replicas, target averageValue, pods, expected replicas)
CALCULATOR_CASES = [
    # TestReplicaCalcScaleUpCM: avg (20+10+30)/3 = 20; ceil(3 * 20/15) = ceil(4.0) = 4
    ("ScaleUpCM", 3, 15, pods_of(20, 10, 30), 4),
    # TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale: readiness is ignored for Pods
    # metrics, so the unready pod counts: avg 30; ceil(3 * 30/15) = 6
    ("ScaleUpCMUnreadyNoLessScale", 3, 15, pods_of(50, 10, (30, "U")), 6),
    # TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown: avg 95000/3 = 31666 milli;
    # ceil(3 * 31666/15000) = ceil(6.3332) = 7
    ("ScaleUpCMUnreadyWouldScaleDown", 3, 15, pods_of((50, "U"), 15, (30, "U")), 7),
    # TestReplicaCalcScaleUpCMExternalNoLabels (podMetric): ceil(1 * 8.6/4.4) = ceil(1.95) = 2
    ("ScaleUpCMOnePod", 1, 4.4, pods_of(8.6), 2),
    # TestReplicaCalcScaleDownCM: ceil(5 * 12/20) = ceil(3.0) = 3
    ("ScaleDownCM", 5, 20, pods_of(12, 12, 12, 12, 12), 3),
    # TestReplicaCalcToleranceCM: avg 62000/3 = 20666 milli; 20666/20000 = 1.033 <= 1.1 -> keep 3
    ("ToleranceCM", 3, 20, pods_of(20, 21, 21), 3),
    # TestReplicaCalcScaleUpIgnoresFailedPods: Failed pods dropped; avg 60; ceil(2 * 60/30) = 4
    ("ScaleUpIgnoresFailedPods", 2, 30, pods_of(50, 70, (None, "F"), (None, "F")), 4),
    # TestReplicaCalcScaleUpIgnoresDeletionPods: deleting pods and their samples dropped;
    # avg (50+70)/2 = 60; ceil(2 * 60/30) = 4
    ("ScaleUpIgnoresDeletionPods", 2, 30, pods_of(50, 70, (900, "D"), (900, "D")), 4),
    # TestReplicaCalcScaleDownIgnoresFailedPods: avg 140/5 = 28; ceil(5 * 28/50) = ceil(2.8) = 3
    ("ScaleDownIgnoresFailedPods", 5, 50, pods_of(10, 30, 50, 25, 25, (9, "F"), (9, "F")), 3),
    # TestReplicaCalcScaleDownExcludeUnscheduledPods: Pending pods left out on a scale-down;
    # ceil(1 * 10/50) = ceil(0.2) = 1
    ("ScaleDownExcludeUnscheduled", 5, 50, pods_of(10, (None, "P"), (None, "P"), (None, "P")), 1),
    # TestReplicaCalcMissingMetricsNoChangeEq: ratio 50/50 = 1.0 is neither up nor down, so the
    # missing pod is not filled in; 1.0 within tolerance -> keep 2
    ("MissingMetricsNoChangeEq", 2, 50, pods_of(50, None), 2),
    # TestReplicaCalcMissingMetricsNoChangeGt: 95/50 = 1.9 (up) -> missing = 0;
    # (95+0)/2 = 47.5 -> 0.95 within tolerance -> keep 2
    ("MissingMetricsNoChangeGt", 2, 50, pods_of(95, None), 2),
    # TestReplicaCalcMissingMetricsNoChangeLt: 30/50 = 0.6 (down) -> missing = target 50;
    # (30+50)/2 = 40 -> 0.8; ceil(2 * 0.8) = 2
    ("MissingMetricsNoChangeLt", 2, 50, pods_of(30, None), 2),
    # TestReplicaCalcMissingMetrics (as a Pods metric): avg (40+10)/2 = 25 -> 0.5 (down)
    # -> missing = 50 each; (40+10+50+50)/4 = 37.5 -> 0.75; ceil(4 * 0.75) = 3
    ("MissingMetricsScaleDown", 4, 50, pods_of(40, 10, None, None), 3),
    # TestReplicaCalcMissingMetricsUnreadyChange: Pending pod's sample dropped; 45/50 = 0.9 (down)
    # -> missing = 50; (45+50)/2 = 47.5 -> 0.95 within tolerance -> keep 3
    ("MissingMetricsUnreadyChange", 3, 50, pods_of((10, "P"), 45, None), 3),
    # TestReplicaCalcMissingMetricsUnreadyScaleUp: 200/50 = 4 (up) -> Pending and missing = 0;
    # (200+0+0)/3 = 66.666 -> 1.3333; ceil(3 * 1.33332) = 4
    ("MissingMetricsUnreadyScaleUp", 3, 50, pods_of((10, "P"), 200, None), 4),
    # TestReplicaCalcMissingMetricsUnreadyScaleDown (Pods metric: missing = target, not 100 %):
    # 10/50 = 0.2 -> missing = 50; (10+10+50)/3 = 23.333 -> 0.46666; ceil(3 * 0.46666) = 2
    ("MissingMetricsUnreadyScaleDown", 4, 50, pods_of((10, "P"), 10, 10, None), 2),
    # TestReplicaCalcDuringRollingUpdateWithMaxSurge: 3 pods for 2 replicas; 10/50 = 0.2 ->
    # missing = 50; 70/3 = 23.333 -> 0.46666; ceil(3 * 0.46666) = 2 -> 2
    ("RollingUpdateWithMaxSurge", 2, 50, pods_of(10, 10, None), 2),
    # Pending pods damp a scale-up: 80/50 = 1.6 (up) -> Pending = 0;
    # (80+80+0)/3 = 53.333 -> 1.0667 within tolerance -> keep 3
    ("PendingDampsScaleUp", 3, 50, pods_of(80, 80, (None, "P")), 3),
    # 100/50 = 2 (up) -> Pending = 0; 200/3 = 66.666 -> 1.33332; ceil(3 * 1.33332) = 4
    ("PendingCountsZeroOnScaleUp", 3, 50, pods_of(100, 100, (None, "P")), 4),
    # Filling in flips direction: 60/50 = 1.2 (up) -> missing = 0; 60/3 = 20 -> 0.4 (down)
    # -> keep 3
    ("MissingFlipsDirection", 3, 50, pods_of(60, None, None), 3),
]


@pytest.mark.parametrize(
    ("current", "target", "pods", "expected"),
    [c[1:] for c in CALCULATOR_CASES],
    ids=[c[0] for c in CALCULATOR_CASES],
)
def test_replica_calculator(
    current: int, target: float, pods: tuple[PodSample, ...], expected: int
) -> None:
    assert propose(current, target, pods).replicas == expected


def test_proposal_reports_the_numbers_kubernetes_reports() -> None:
    # avg 95000/3 = 31666 milli (integer quotient, as Kubernetes)
    p = propose(3, 15, pods_of((50, "U"), 15, (30, "U"), (None, "P"), None, (1, "F")))
    assert p.current_average == pytest.approx(31.666)
    assert p.usage_ratio == pytest.approx(31666 / 15000)
    assert (p.ready_pods, p.unready_pods, p.missing_pods, p.ignored_pods) == (3, 1, 1, 1)
    assert p.description == "pods metric qps"


# (name, current, per-pod value, expected): target 50, the tolerance band is [0.9, 1.1]
TOLERANCE_CASES = [
    # 55/50 = 1.10 <= 1.1 -> keep 4
    ("ratio 1.10 keeps", 4, 55.0, 4),
    # 55.5/50 = 1.11 > 1.1 -> ceil(4 * 1.11) = ceil(4.44) = 5
    ("ratio 1.11 scales up", 4, 55.5, 5),
    # 45/50 = 0.90 >= 0.9 -> keep 10
    ("ratio 0.90 keeps", 10, 45.0, 10),
    # 44.5/50 = 0.89 < 0.9 -> ceil(10 * 0.89) = ceil(8.9) = 9
    ("ratio 0.89 scales down", 10, 44.5, 9),
]


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [c[1:] for c in TOLERANCE_CASES],
    ids=[c[0] for c in TOLERANCE_CASES],
)
def test_tolerance_edges(current: int, value: float, expected: int) -> None:
    assert propose(current, 50, pods_of(*[value] * current)).replicas == expected


@pytest.mark.parametrize(
    ("pods", "message"),
    [
        # no sample for the metric from any pod at all
        (
            pods_of(None, None),
            "unable to get metric qps: no metrics returned from custom metrics API",
        ),
        # samples only from Pending / deleting pods
        (
            pods_of((30, "P"), (30, "D")),
            "did not receive metrics for targeted pods (pods might be unready)",
        ),
    ],
    ids=["no metrics", "only unready pods"],
)
def test_metric_errors_are_data(pods: tuple[PodSample, ...], message: str) -> None:
    result = pods_metric_replicas(MetricSpec(QPS, 50), 2, pods, Tolerances())
    assert result == MetricError(QPS, "FailedGetPodsMetric", message)


# --- decide(): several metrics, clamping, errors, events -------------------------------------

NO_WINDOW = HPAControllerConfig(downscale_stabilization_window_s=0)


def multi(i: int, qps: float | None, sm: float | None) -> PodSample:
    metrics = {k: v for k, v in ((QPS, qps), (SM, sm)) if v is not None}
    return PodSample(f"pod-{i}", metrics=metrics)


TWO_METRICS = (MetricSpec(QPS, 10), MetricSpec(SM, 50))

# (name, current, pods (qps, sm), min, max, expected desired, expected reason, expected limit)
DECIDE_CASES = [
    # qps: ceil(2 * 20/10) = 4; sm: ceil(2 * 75/50) = 3; max(4, 3) = 4
    ("max of metrics: qps wins", 2, [(20, 75), (20, 75)], 1, 10, 4,
     "pods metric qps above target", "DesiredWithinRange"),
    # qps: 10/10 = 1.0 -> keep 2; sm: ceil(2 * 150/50) = 6; legacy cap max(2*2, 4) = 4
    ("max of metrics: sm wins, capped at max(2*current, 4)", 2, [(10, 150), (10, 150)], 1, 10, 4,
     f"pods metric {SM} above target", "ScaleUpLimit"),
    # qps: ceil(4 * 2/10) = 1; sm: ceil(4 * 10/50) = 1; min 2 -> 2
    ("all below target, clamped to min", 4, [(2, 10)] * 4, 2, 10, 2,
     "All metrics below target", "TooFewReplicas"),
    # qps: ceil(3 * 50/10) = 15; cap max(6, 4) = 6 > max 5 -> 5
    ("clamped to max", 3, [(50, 50)] * 3, 1, 5, 5,
     "pods metric qps above target", "TooManyReplicas"),
    # qps: ceil(4 * 5/10) = 2; sm: ceil(4 * 40/50) = ceil(3.2) = 4; max(2, 4) = 4 < current? no,
    # 4 == current -> nothing to do
    ("one metric holds the others", 4, [(5, 40)] * 4, 1, 10, 4, "", "DesiredWithinRange"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "samples", "min_r", "max_r", "desired", "reason", "limit"),
    [c[1:] for c in DECIDE_CASES],
    ids=[c[0] for c in DECIDE_CASES],
)
def test_decide_metrics_and_bounds(
    current: int,
    samples: list[tuple[float, float]],
    min_r: int,
    max_r: int,
    desired: int,
    reason: str,
    limit: str,
) -> None:
    spec = HPASpec(max_replicas=max_r, min_replicas=min_r, metrics=TWO_METRICS)
    pods = tuple(multi(i, q, s) for i, (q, s) in enumerate(samples))
    d = decide(spec, current, pods, HPAState(), now_s=0.0, config=NO_WINDOW)
    assert (d.desired_replicas, d.reason, d.limit) == (desired, reason, limit)
    assert d.changed == (desired != current)
    assert len(d.metrics) == 2


@pytest.mark.parametrize(
    ("current", "min_r", "max_r", "desired", "reason"),
    [
        (7, 1, 5, 5, "Current number of replicas above Spec.MaxReplicas"),
        (1, 2, 5, 2, "Current number of replicas below Spec.MinReplicas"),
    ],
    ids=["above max", "below min"],
)
def test_current_outside_bounds_is_brought_back_without_metrics(
    current: int, min_r: int, max_r: int, desired: int, reason: str
) -> None:
    spec = HPASpec(max_replicas=max_r, min_replicas=min_r, metrics=(MetricSpec(SM, 50),))
    d = decide(spec, current, (), HPAState(), now_s=0.0)
    assert (d.desired_replicas, d.changed, d.reason, d.metrics) == (desired, True, reason, ())
    assert event_message(d) == f"New size: {desired}; reason: {reason}"


def test_zero_replicas_with_min_above_zero_disables_scaling() -> None:
    spec = HPASpec(max_replicas=3, metrics=(MetricSpec(SM, 50),))
    d = decide(spec, 0, pods_of(90), HPAState(), now_s=0.0)
    assert (d.desired_replicas, d.changed) == (0, False)
    active = d.condition(ConditionType.SCALING_ACTIVE)
    assert active is not None and (active.status, active.reason) == (False, "ScalingDisabled")
    assert event_message(d) is None


def test_seed_scenario_scales_to_three_with_kubernetes_event_text() -> None:
    # arena: --scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL --scale-target=50 --min 1 --max 3
    spec = HPASpec(max_replicas=3, min_replicas=1, metrics=(MetricSpec(SM, 50),))
    hot = PodSample("deepseek-0", metrics={SM: 95})
    # ceil(1 * 95/50) = ceil(1.9) = 2; cap max(2*1, 4) = 4 -> 2
    d1 = decide(spec, 1, (hot,), HPAState(), now_s=0.0)
    assert event_message(d1) == f"New size: 2; reason: pods metric {SM} above target"
    # ceil(2 * 80/50) = ceil(3.2) = 4 > max 3 -> 3
    pods = (PodSample("deepseek-0", metrics={SM: 80}), PodSample("deepseek-1", metrics={SM: 80}))
    d2 = decide(spec, 2, pods, d1.state, now_s=15.0)
    assert event_message(d2) == f"New size: 3; reason: pods metric {SM} above target"
    assert (d2.recommended_replicas, d2.limit) == (4, "TooManyReplicas")


# (name, qps samples, sm samples, current, expected desired, changed)
ERROR_CASES = [
    # both metrics have no samples -> keep the current count
    ("all metrics invalid", None, None, 3, 3, False),
    # qps invalid, sm: ceil(3 * 100/50) = 6 -> scale up on the valid metric
    ("one invalid, other scales up", None, 100, 3, 6, True),
    # qps invalid, sm: ceil(3 * 10/50) = 1 < 3 -> do not scale down on partial data
    ("one invalid, other would scale down", None, 10, 3, 3, False),
]


@pytest.mark.parametrize(
    ("qps", "sm", "current", "desired", "changed"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_invalid_metrics(
    qps: float | None, sm: float | None, current: int, desired: int, changed: bool
) -> None:
    spec = HPASpec(max_replicas=10, metrics=TWO_METRICS)
    pods = tuple(multi(i, qps, sm) for i in range(current))
    d = decide(spec, current, pods, HPAState(), now_s=0.0, config=NO_WINDOW)
    assert (d.desired_replicas, d.changed) == (desired, changed)
    assert d.error is not None and d.error.startswith("invalid metrics (")
    assert isinstance(d.metrics[0], MetricError)
    active = d.condition(ConditionType.SCALING_ACTIVE)
    assert active is not None and active.status == changed


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_replicas": 0, "metrics": (MetricSpec(SM, 50),)}, "maxReplicas"),
        ({"max_replicas": 2, "min_replicas": 3, "metrics": (MetricSpec(SM, 50),)}, "maxReplicas"),
        ({"max_replicas": 2, "metrics": ()}, "metrics"),
    ],
)
def test_spec_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        HPASpec(**kwargs)  # type: ignore[arg-type]


def test_metric_target_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="averageValue"):
        MetricSpec(SM, 0)
