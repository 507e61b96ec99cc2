"""HPA ``behavior``: stabilization windows, Pods/Percent policies, selectPolicy, defaults.

Every tick is a ``decide`` call on virtual time; the state returned by one tick
is passed to the next, as the controller does. One metric, target 50, so a pod
at ``50 * r`` asks for ratio ``r``.
"""

from __future__ import annotations

import pytest

from tierserve.policy.hpa import (
    Behavior,
    HPADecision,
    HPASpec,
    HPAState,
    MetricSpec,
    PodSample,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    decide,
)

SM = "DCGM_CUSTOM_PROCESS_SM_UTIL"
NO_STABILIZATION = ScalingRules(stabilization_window_s=0)


def pods(n: int, value: float) -> tuple[PodSample, ...]:
    return tuple(PodSample(f"pod-{i}", metrics={SM: value}) for i in range(n))


def spec(behavior: Behavior | None, max_replicas: int = 100, min_replicas: int = 1) -> HPASpec:
    return HPASpec(max_replicas, (MetricSpec(SM, 50),), min_replicas, behavior)


def run(
    hpa: HPASpec, current: int, ticks: list[tuple[float, float]]
) -> list[tuple[float, HPADecision]]:
    """Feed (now_s, per-pod value) ticks, applying each decision before the next."""
    state = HPAState()
    out = []
    for now_s, value in ticks:
        d = decide(hpa, current, pods(current, value), state, now_s)
        out.append((now_s, d))
        state, current = d.state, d.desired_replicas
    return out


# (name, behavior, current, per-pod value, expected desired, expected limit)
ONE_TICK_CASES = [
    # Defaults with behavior: Max(Pods 4, Percent 100) per 15 s from 1 replica:
    # metric ceil(1 * 500/50) = 10; limit max(1 + 4, ceil(1 * 2.0)) = 5
    ("default behavior: up by 4 pods", Behavior(), 1, 500, 5, "ScaleUpLimit"),
    # from 10 replicas, ratio 3: ceil(10 * 3) = 30; limit max(10 + 4, ceil(10 * 2.0)) = 20
    ("default behavior: up by 100 %", Behavior(), 10, 150, 20, "ScaleUpLimit"),
    # No behavior (legacy): ceil(1 * 10) = 10; limit max(2 * 1, 4) = 4
    ("no behavior: up to max(2*current, 4)", None, 1, 500, 4, "ScaleUpLimit"),
    # Percent 50 per 60 s: ceil(4 * 3) = 12; limit ceil(4 * 1.5) = 6
    (
        "Percent 50 up",
        Behavior(scale_up=ScalingRules(policies=(ScalingPolicy(PolicyType.PERCENT, 50, 60),))),
        4, 150, 6, "ScaleUpLimit",
    ),
    # Pods 2 / Percent 50, Max: ceil(10 * 2) = 20; max(10 + 2, ceil(10 * 1.5)) = 15
    (
        "selectPolicy Max up",
        Behavior(scale_up=ScalingRules(policies=(
            ScalingPolicy(PolicyType.PODS, 2, 60), ScalingPolicy(PolicyType.PERCENT, 50, 60),
        ))),
        10, 100, 15, "ScaleUpLimit",
    ),
    # same, Min: min(10 + 2, 15) = 12
    (
        "selectPolicy Min up",
        Behavior(scale_up=ScalingRules(select_policy=SelectPolicy.MIN, policies=(
            ScalingPolicy(PolicyType.PODS, 2, 60), ScalingPolicy(PolicyType.PERCENT, 50, 60),
        ))),
        10, 100, 12, "ScaleUpLimit",
    ),
    # Disabled: ceil(4 * 2) = 8, but the limit is the current count, 4
    (
        "selectPolicy Disabled up",
        Behavior(scale_up=ScalingRules(select_policy=SelectPolicy.DISABLED)),
        4, 100, 4, "ScaleUpLimit",
    ),
    # Scale-down, window 0, Pods 3 / Percent 50, Max (largest change):
    # ceil(10 * 0.2) = 2; min(10 - 3, int(10 * 0.5)) = 5
    (
        "selectPolicy Max down",
        Behavior(scale_down=ScalingRules(stabilization_window_s=0, policies=(
            ScalingPolicy(PolicyType.PODS, 3, 60), ScalingPolicy(PolicyType.PERCENT, 50, 60),
        ))),
        10, 10, 5, "ScaleDownLimit",
    ),
    # same, Min (smallest change): max(10 - 3, 5) = 7
    (
        "selectPolicy Min down",
        Behavior(scale_down=ScalingRules(stabilization_window_s=0, select_policy=SelectPolicy.MIN,
                                         policies=(
            ScalingPolicy(PolicyType.PODS, 3, 60), ScalingPolicy(PolicyType.PERCENT, 50, 60),
        ))),
        10, 10, 7, "ScaleDownLimit",
    ),
    # Disabled down: ceil(10 * 0.2) = 2, kept at 10
    (
        "selectPolicy Disabled down",
        Behavior(scale_down=ScalingRules(stabilization_window_s=0,
                                         select_policy=SelectPolicy.DISABLED)),
        10, 10, 10, "ScaleDownLimit",
    ),
    # Default scale-down policy (100 % per 15 s) with window 0 allows the full drop:
    # ceil(10 * 0.2) = 2; limit int(10 * 0) = 0 < min 1 -> min 1 allowed; 2 within range
    ("default down policy, window 0", Behavior(scale_down=NO_STABILIZATION), 10, 10, 2,
     "DesiredWithinRange"),
    # Per-direction tolerance (Kubernetes 1.33): 54/50 = 1.08 > 1 + 0.05;
    # ceil(4 * 1.08) = ceil(4.32) = 5
    ("scale-up tolerance 0.05", Behavior(scale_up=ScalingRules(tolerance=0.05)), 4, 54, 5,
     "DesiredWithinRange"),
    # ... and with the default 0.1 the same ratio changes nothing
    ("default tolerance 0.1", Behavior(), 4, 54, 4, "DesiredWithinRange"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("behavior", "current", "value", "desired", "limit"),
    [c[1:] for c in ONE_TICK_CASES],
    ids=[c[0] for c in ONE_TICK_CASES],
)
def test_one_tick(
    behavior: Behavior | None, current: int, value: float, desired: int, limit: str
) -> None:
    d = decide(spec(behavior), current, pods(current, value), HPAState(), now_s=0.0)
    assert (d.desired_replicas, d.limit) == (desired, limit)


@pytest.mark.parametrize(
    ("behavior", "release_at_s"),
    [
        # Legacy (no behavior): window 300 s from the controller flag.
        (None, 345.0),
        # behavior defaults: scale-down window 300 s, 100 % per 15 s.
        (Behavior(), 345.0),
    ],
    ids=["no behavior", "default behavior"],
)
def test_scale_down_held_for_the_300s_window_then_released(
    behavior: Behavior | None, release_at_s: float
) -> None:
    # 4 replicas at target (ratio 1.0 -> 4) for t = 0..45, then load falls to ratio 0.4:
    # ceil(4 * 0.4) = ceil(1.6) = 2. The last "4" was recommended at t = 45, so the
    # scale-down waits until it is 300 s old: t = 45 + 300 = 345.
    ticks = [(t * 15.0, 50.0 if t <= 3 else 20.0) for t in range(30)]
    seen = run(spec(behavior), 4, ticks)
    for now_s, d in seen:
        if now_s < 60:
            assert (d.desired_replicas, d.stabilization) == (4, "ReadyForNewScale")
        elif now_s < release_at_s:
            assert (d.desired_replicas, d.changed) == (4, False), now_s
            assert d.recommended_replicas == 2
            assert d.stabilization == "ScaleDownStabilized"
        elif now_s == release_at_s:
            assert (d.desired_replicas, d.changed) == (2, True)
            assert d.reason == "All metrics below target"
        else:
            # two pods at 20 ask for ceil(2 * 0.4) = 1, but the "2"s of t = 60..345 hold it
            assert (d.desired_replicas, d.recommended_replicas) == (2, 1), now_s
    # The history stays bounded: slots older than the window are reused.
    assert len(seen[-1][1].state.recommendations) <= 300 / 15 + 2


def test_scale_down_policy_paces_the_release() -> None:
    # Scale-down: window 300 s, at most 1 pod per 60 s. Load falls to ratio 0.4 at t = 60
    # (ceil(4 * 0.4) = 2); the window releases it at t = 345, then the policy paces it:
    # t=345: limit 4 - 1 = 3 -> 3 (ScaleDownLimit)
    # t=360..390: 1 pod removed within 60 s, period start 3 + 1 = 4, limit 4 - 1 = 3 -> 3
    # t=405: the t=345 event is exactly 60 s old, out of the period: 3 - 1 = 2 -> 2
    down = ScalingRules(policies=(ScalingPolicy(PolicyType.PODS, 1, 60),))
    hpa = spec(Behavior(scale_down=down))
    state = HPAState()
    current = 4
    sizes = {}
    for now_s in (t * 15.0 for t in range(28)):
        # The total load stays 80 while replicas go away: 3 pods at 26.67 -> ratio 0.533,
        # ceil(3 * 0.533) = 2; 2 pods at 40 -> ratio 0.8, ceil(2 * 0.8) = 2.
        per_pod = 50.0 if now_s < 60 else 80.0 / current
        d = decide(hpa, current, pods(current, per_pod), state, now_s)
        sizes[now_s] = (d.desired_replicas, d.limit)
        state, current = d.state, d.desired_replicas
    assert sizes[330.0] == (4, "DesiredWithinRange")
    assert sizes[345.0] == (3, "ScaleDownLimit")
    assert sizes[390.0] == (3, "ScaleDownLimit")
    assert sizes[405.0] == (2, "DesiredWithinRange")


def test_scale_up_pods_policy_counts_recent_scale_events() -> None:
    # Default behavior from 1 replica, every pod at ratio 10 (max 10):
    # t=0:  ceil(1 * 10) = 10; max(1 + 4, ceil(1 * 2)) = 5 -> 5 (ScaleUpLimit)
    # t=5:  4 added within 15 s, period start 5 - 4 = 1 -> limit still 5 -> 5
    # t=15: the t=0 event is exactly 15 s old, out: ceil(5 * 10) = 50;
    #       limit max(5 + 4, ceil(5 * 2)) = 10, not below max 10 -> 10 (TooManyReplicas)
    hpa = spec(Behavior(), max_replicas=10)
    seen = run(hpa, 1, [(0.0, 500.0), (5.0, 500.0), (15.0, 500.0)])
    assert [(d.desired_replicas, d.limit) for _, d in seen] == [
        (5, "ScaleUpLimit"),
        (5, "ScaleUpLimit"),
        (10, "TooManyReplicas"),
    ]
    assert [e.replica_change for e in seen[-1][1].state.scale_up_events] == [4, 5]


def test_scale_up_stabilization_window() -> None:
    # Scale-up window 60 s: the lowest recommendation of the last 60 s wins.
    # t=0: ratio 1.0 -> 2. t=15..45: ratio 3 -> ceil(2 * 3) = 6, but the t=0 "2" is
    # still in the window -> 2 (ScaleUpStabilized). t=60: "2" is 60 s old, out ->
    # min(6, 6, 6, 6) = 6; limit max(2 + 4, ceil(2 * 2)) = 6 -> 6
    up = ScalingRules(stabilization_window_s=60)
    ticks = [(0.0, 50.0), (15.0, 150.0), (30.0, 150.0), (45.0, 150.0), (60.0, 150.0)]
    seen = run(spec(Behavior(scale_up=up)), 2, ticks)
    assert [d.desired_replicas for _, d in seen] == [2, 2, 2, 2, 6]
    assert seen[1][1].stabilization == "ScaleUpStabilized"
    assert seen[-1][1].stabilization == "ReadyForNewScale"


def test_no_behavior_keeps_no_scale_events() -> None:
    # Kubernetes stores scale events only when a behavior is set: only it reads them.
    seen = run(spec(None), 1, [(0.0, 500.0)])
    d = seen[0][1]
    assert d.changed and d.state.scale_up_events == () and d.state.scale_down_events == ()


def test_policy_validation() -> None:
    from tierserve.errors import ValidationError

    with pytest.raises(ValidationError, match="periodSeconds"):
        ScalingPolicy(PolicyType.PODS, 1, 0)
    with pytest.raises(ValidationError, match="policies"):
        ScalingRules(policies=())
