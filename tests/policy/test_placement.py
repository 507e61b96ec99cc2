"""ResourcePolicy placement: units in order, max/maxResources, whenTryNextUnits, fit.

Pods ask for 1 GPU, 4 CPUs, 12Gi unless said otherwise; amounts are milli-units
(1 GPU = 1000). ``idc()`` is a 1-GPU node of the seed's IDC pool, ``virtual()`` a
large virtual node with the virtual-kubelet taint.
"""

from __future__ import annotations

import pytest
from builders import (
    IDC_POOL,
    SEED_APP,
    VK,
    idc,
    node,
    pod,
    policy,
    seed_policy,
    snapshot,
    virtual,
)

from tierserve.errors import NeverPossible, RetryLater
from tierserve.model import GPU
from tierserve.policy.decisions import Placement, Retry, Unschedulable
from tierserve.policy.placement import bind, filter_nodes, place, score_nodes
from tierserve.policy.reasons import (
    ConflictingPolicies,
    ExceedMax,
    ExceedMaxResources,
    InsufficientResource,
    LackResource,
    MissingMatchLabel,
    NeverFits,
    NodeCount,
    NodeNotFound,
    NodeSelectorMismatch,
    NodeUnschedulable,
    NoEligibleNodes,
    NoPreemption,
    NoWaitInUnit,
    OutsideUnit,
    PodRejected,
    TerminatingPods,
    UntoleratedTaint,
    WaitingForTimeout,
    WaitingInUnit,
)
from tierserve.policy.scalein import scale_in_order, virtual_node_names
from tierserve.policy.snapshot import Snapshot

NO_GPU = InsufficientResource(GPU, requested=1000, free=0)


def placed(decision: Placement | Unschedulable) -> Placement:
    assert isinstance(decision, Placement), decision
    return decision


def refused(decision: Placement | Unschedulable) -> Unschedulable:
    assert isinstance(decision, Unschedulable), decision
    return decision


# --- the seed -------------------------------------------------------------------------


def test_seed_scale_out_one_to_three_then_in_to_one() -> None:
    rp = seed_policy()
    nodes = [idc().build(), virtual().build()]
    snap = Snapshot.build(nodes, [])
    names = []
    for i in range(3):
        new = pod(f"deepseek-predictor-{i}").created(float(i)).build()
        decision = placed(place(new, snap, [rp], now_s=10.0))
        names.append((decision.node, decision.unit))
        # each placement joins the snapshot before the next one is decided
        snap = snap.with_pod(bind(new, decision).with_status(phase="Ready"))
    # idc001 has 1 GPU: replica 0 takes it (1000 - 1000 = 0 free), 1 and 2 spill to unit 1
    assert names == [("idc001", 0), (VK, 1), (VK, 1)]
    second = placed(place(pod("x").build(), snap, [rp], now_s=10.0))
    assert second.reasons == (LackResource(unit=0, nodes=1, why=(NodeCount(NO_GPU, 1),)),)

    # 3 -> 1: the two virtual-node replicas go first (unit 1 before unit 0)
    order = scale_in_order(snap.pods, virtual_node_names(nodes))
    assert [r.name for r in order[:2]] == ["deepseek-predictor-2", "deepseek-predictor-1"]
    assert {r.status.node_name for r in order[:2]} == {VK}
    assert order[2].status.node_name == "idc001"


def test_seed_policy_applies_only_to_selected_namespace_and_labels() -> None:
    snap = snapshot([idc(), virtual()])
    other_ns = pod("p", namespace="other").build()
    other_app = pod("q").label(app="something-else").build()
    for p in (other_ns, other_app):
        decision = placed(place(p, snap, [seed_policy()], now_s=0))
        # no policy: any fitting node; the virtual node is tainted, so idc001
        assert (decision.node, decision.unit, decision.policy) == ("idc001", None, None)


# --- max / maxResources ----------------------------------------------------------------


def test_max_two_on_idc_sends_third_to_cloud_with_gpus_free() -> None:
    rp = policy().seed_units(max=2).build()
    pods = [pod("p0").on("idc001", unit=0), pod("p1").on("idc001", unit=0)]
    snap = snapshot([idc(gpu=4), virtual()], pods)
    decision = placed(place(pod("p2").build(), snap, [rp], now_s=0))
    # idc001 still has 4 - 2 = 2 GPUs free, but unit 0 holds 2 >= max 2
    assert (decision.node, decision.unit) == (VK, 1)
    assert decision.reasons == (ExceedMax(unit=0, max=2, count=2),)


def test_max_counts_pods_on_unit_nodes_when_no_unit_recorded() -> None:
    rp = policy().seed_units(max=1).build()
    snap = snapshot([idc(gpu=4), virtual()], [pod("p0").on("idc001")])
    assert placed(place(pod("p1").build(), snap, [rp], now_s=0)).unit == 1


def test_max_counts_by_pod_labels_when_the_unit_sets_them() -> None:
    rp = (
        policy()
        .unit("ecs", IDC_POOL, max=1, podLabels={"tier": "idc"}, podAnnotations={"a": "1"})
        .unit("eci", podLabels={"tier": "cloud"})
        .build()
    )
    # p0 sits on idc001 but lacks the unit's podLabels, so unit 0 counts 0 < max 1
    snap = snapshot([idc(gpu=4), virtual()], [pod("p0").on("idc001", unit=0)])
    first = placed(place(pod("p1").build(), snap, [rp], now_s=0))
    assert (first.unit, dict(first.pod_labels), dict(first.pod_annotations)) == (
        0,
        {"tier": "idc"},
        {"a": "1"},
    )
    bound = bind(pod("p1").build(), first)
    assert bound.metadata.labels["tier"] == "idc" and bound.metadata.annotations["a"] == "1"
    # with p1 labelled tier=idc and annotated a=1, unit 0 counts 1 >= max 1
    second = placed(place(pod("p2").build(), snap.with_pod(bound), [rp], now_s=0))
    assert (second.unit, dict(second.pod_labels)) == (1, {"tier": "cloud"})


@pytest.mark.parametrize(
    ("gpus", "unit", "reasons"),
    [
        # used 1000 + requested 1000 = 2000 <= maxResources 2000: unit 0
        (1, 0, ()),
        # used 1000 + requested 2000 = 3000 > 2000: unit 1
        (2, 1, (ExceedMaxResources(0, GPU, limit=2000, used=1000, requested=2000),)),
    ],
)
def test_max_resources(gpus: int, unit: int, reasons: tuple[object, ...]) -> None:
    rp = policy().seed_units(maxResources={"nvidia.com/gpu": 2}).build()
    snap = snapshot([idc(gpu=8), virtual()], [pod("p0").on("idc001", unit=0)])
    decision = placed(place(pod("new", gpu=gpus).build(), snap, [rp], now_s=0))
    assert (decision.unit, decision.reasons) == (unit, reasons)


# --- whenTryNextUnits ------------------------------------------------------------------

FULL_IDC = [pod("old").on("idc001", unit=0)]  # idc001's one GPU is taken: 1000 - 1000 = 0


@pytest.mark.parametrize(
    ("try_next", "idc_fields", "unit", "waiting"),
    [
        # default: lack of resources in unit 0 -> unit 1
        ("LackResourceOrExceedMax", {}, 1, None),
        ("LackResourceOrExceedMax", {"max": 5}, 1, None),
        # ExceedMax: no max/maxResources on unit 0 -> unit 1
        ("ExceedMax", {}, 1, None),
        # ExceedMax: 1 pod < max 5 -> wait in unit 0 for capacity
        ("ExceedMax", {"max": 5}, None, WaitingInUnit(0)),
        # ExceedMax: 1 pod >= max 1 -> unit 1
        ("ExceedMax", {"max": 1}, 1, None),
        # ExceedMax with ACK's wait-for-ecs-scaling label and no max -> wait
        (
            "ExceedMax",
            {"podLabels": {"k8s.aliyun.com/resource-policy-wait-for-ecs-scaling": "true"}},
            None,
            WaitingInUnit(0),
        ),
        # LackResourceAndNoTerminating, nothing terminating -> unit 1
        ("LackResourceAndNoTerminating", {}, 1, None),
    ],
)
def test_when_try_next_units(
    try_next: str, idc_fields: dict[str, object], unit: int | None, waiting: object
) -> None:
    rp = policy().seed_units(**idc_fields).when_try_next(try_next).build()
    snap = snapshot([idc(), virtual()], FULL_IDC)
    decision = place(pod("new").build(), snap, [rp], now_s=0)
    if unit is not None:
        assert placed(decision).unit == unit
    else:
        out = refused(decision)
        assert out.retry is Retry.LATER and out.units[-1] == waiting
        assert out.retry_after_s is None


@pytest.mark.parametrize(
    ("now_s", "unit", "remaining_s"),
    [
        # created at 100, timeout 1m: at 130 the pod has 100 + 60 - 130 = 30 s left
        (130.0, None, 30.0),
        # at 160 the timeout is reached (160 - 100 = 60 >= 60): next unit
        (160.0, 1, None),
        (500.0, 1, None),
    ],
)
def test_timeout_or_exceed_max(now_s: float, unit: int | None, remaining_s: float | None) -> None:
    rp = policy().seed_units(max=3).when_try_next("TimeoutOrExceedMax", "1m").build()
    snap = snapshot([idc(), virtual()], FULL_IDC)
    decision = place(pod("new").created(100.0).build(), snap, [rp], now_s=now_s)
    if unit is None:
        out = refused(decision)
        assert out.retry is Retry.LATER and out.retry_after_s == remaining_s
        assert out.units == (
            LackResource(0, 1, (NodeCount(NO_GPU, 1),)),
            WaitingForTimeout(unit=0, timeout_s=60.0, until_s=160.0),
        )
        assert isinstance(out.error(), RetryLater)
        assert out.error().retry_after_s == 30.0  # type: ignore[union-attr]
    else:
        assert placed(decision).unit == unit


def test_waiting_for_a_timeout_says_the_same_words_on_every_attempt() -> None:
    # kube-scheduler writes the message into the pod's condition: one that changed per
    # attempt (seconds left) would rewrite the pod and requeue it at once, a hot loop
    rp = policy().seed_units(max=3).when_try_next("TimeoutOrExceedMax", "15m").build()
    snap = snapshot([idc(), virtual()], FULL_IDC)
    new = pod("new").created(1_764_650_000.0).build()
    first = refused(place(new, snap, [rp], now_s=1_764_650_010.0))
    later = refused(place(new, snap, [rp], now_s=1_764_650_500.5))
    assert first.messages() == later.messages()
    assert "ends at 2025-12-02T04:48:20Z" in " ".join(first.messages())
    assert first.retry_after_s == 890.0 and later.retry_after_s == 399.5


def test_timeout_defaults_to_15_minutes_and_max_reached_skips_waiting() -> None:
    rp = policy().seed_units(max=3).when_try_next("TimeoutOrExceedMax").build()
    snap = snapshot([idc(), virtual()], FULL_IDC)
    # 900 s default timeout - 60 s elapsed = 840 s left
    out = refused(place(pod("new").build(), snap, [rp], now_s=60.0))
    assert out.retry_after_s == 840.0
    # max 1: unit 0 holds 1 >= 1, so no waiting at all
    rp1 = policy().seed_units(max=1).when_try_next("TimeoutOrExceedMax").build()
    assert placed(place(pod("new").build(), snap, [rp1], now_s=60.0)).unit == 1
    # no max and no wait label: ACK describes no wait, so the pod moves on at once
    rp2 = policy().seed_units().when_try_next("TimeoutOrExceedMax").build()
    moved = placed(place(pod("new").build(), snap, [rp2], now_s=60.0))
    assert moved.unit == 1
    assert moved.reasons[-1] == NoWaitInUnit(0, "TimeoutOrExceedMax")  # and says why
    # ... and a Pending pod's reason says so too, before anything about preemption
    full = snapshot([idc(), virtual(quota=1)], [*FULL_IDC, pod("v").on(VK, unit=1)])
    out = refused(place(pod("new").build(), full, [rp2], now_s=60.0))
    assert NoWaitInUnit(0, "TimeoutOrExceedMax") in out.units
    assert "waits only in a unit with max" in out.messages()[1]


@pytest.mark.parametrize("max_", [None, 1])
def test_lack_resource_and_no_terminating_waits_for_terminating_pods(max_: int | None) -> None:
    fields = {} if max_ is None else {"max": max_}
    rp = policy().seed_units(**fields).when_try_next("LackResourceAndNoTerminating").build()
    pods = [pod("old").on("idc001", unit=0, phase="Terminating")]
    snap = snapshot([idc(), virtual()], pods)
    out = refused(place(pod("new").build(), snap, [rp], now_s=0))
    # the terminating pod still holds idc001's GPU (free 0) and is not counted toward max
    assert out.retry is Retry.LATER
    assert out.units[-1] == TerminatingPods(unit=0, count=1)


# --- ignoreTerminatingPod / ignorePreviousPod / matchLabelKeys ---------------------------


@pytest.mark.parametrize(
    ("ignore", "unit"),
    [
        # terminating pod not counted: 0 < max 1 -> unit 0 (idc001 has 4 - 1 = 3 GPUs free)
        (True, 0),
        # counted: 1 >= max 1 -> unit 1
        (False, 1),
    ],
)
def test_ignore_terminating_pod(ignore: bool, unit: int) -> None:
    rp = policy().seed_units(max=1).set(ignoreTerminatingPod=ignore).build()
    pods = [pod("old").on("idc001", unit=0, phase="Terminating")]
    snap = snapshot([idc(gpu=4), virtual()], pods)
    assert placed(place(pod("new").build(), snap, [rp], now_s=0)).unit == unit


@pytest.mark.parametrize(
    ("ignore", "unit"),
    [
        # policy created at 2024-01-01T00:00:00Z = 1704067200; old pod at 1704067100 is before
        (True, 0),
        (False, 1),
    ],
)
def test_ignore_previous_pod(ignore: bool, unit: int) -> None:
    rp = (
        policy()
        .seed_units(max=1)
        .set(ignorePreviousPod=ignore)
        .created_at("2024-01-01T00:00:00Z")
        .build()
    )
    pods = [pod("old").on("idc001", unit=0).created(1_704_067_100.0)]
    snap = snapshot([idc(gpu=4), virtual()], pods)
    assert placed(place(pod("new").build(), snap, [rp], now_s=0)).unit == unit


def test_ignore_previous_pod_still_counts_newer_pods() -> None:
    rp = (
        policy()
        .seed_units(max=1)
        .set(ignorePreviousPod=True)
        .created_at("2024-01-01T00:00:00+00:00")
        .build()
    )
    pods = [pod("old").on("idc001", unit=0).created(1_704_067_300.0)]
    snap = snapshot([idc(gpu=4), virtual()], pods)
    assert placed(place(pod("new").build(), snap, [rp], now_s=0)).unit == 1


@pytest.mark.parametrize(
    ("template_hash", "unit"),
    [
        # group hash=a already has 1 pod in unit 0 (max 1 per group) -> unit 1
        ("a", 1),
        # group hash=b has none there -> unit 0
        ("b", 0),
    ],
)
def test_match_label_keys_groups_max(template_hash: str, unit: int) -> None:
    rp = policy().seed_units(max=1).set(matchLabelKeys=["pod-template-hash"]).build()
    pods = [pod("old").label({"pod-template-hash": "a"}).on("idc001", unit=0)]
    snap = snapshot([idc(gpu=4), virtual()], pods)
    new = pod("new").label({"pod-template-hash": template_hash}).build()
    decision = placed(place(new, snap, [rp], now_s=0))
    assert decision.unit == unit
    if unit == 1:
        assert decision.reasons == (ExceedMax(0, 1, 1, group=(("pod-template-hash", "a"),)),)


def test_match_label_keys_missing_label_is_never_possible() -> None:
    rp = policy().seed_units(max=1).set(matchLabelKeys=["pod-template-hash"]).build()
    snap = snapshot([idc(gpu=4), virtual()])
    out = refused(place(pod("new").build(), snap, [rp], now_s=0))
    assert out.retry is Retry.NEVER and out.never_possible
    assert out.reasons == (MissingMatchLabel("deepseek", "pod-template-hash"),)
    result = filter_nodes(pod("new").build(), snap, [rp], 0, ["idc001"])
    assert result.rejected == {"idc001": PodRejected(out.reasons[0])}


# --- policies, units, fit --------------------------------------------------------------


def test_two_policies_selecting_one_pod_is_never_possible() -> None:
    a = policy("a").seed_units().build()
    b = policy("b", app=SEED_APP).unit("eci").build()
    out = refused(place(pod("p").build(), snapshot([idc(), virtual()]), [b, a], now_s=0))
    assert out.reasons == (ConflictingPolicies(("a", "b")),)
    assert out.retry is Retry.NEVER
    assert isinstance(out.error(), NeverPossible)


def test_ecs_unit_never_matches_a_virtual_node_even_by_labels() -> None:
    rp = policy().unit("ecs", {"pool": "any"}).build()
    vk = virtual().label(pool="any")
    # the only node with pool=any is virtual, so the ecs unit has no nodes at all
    out = refused(
        place(
            pod("p").tolerate("virtual-kubelet.io/provider").build(), snapshot([vk]), [rp], now_s=0
        )
    )
    assert out.units == (LackResource(0, 0, ()),)
    assert out.reasons[0] == NoEligibleNodes() and out.retry is Retry.NEVER


def test_eci_unit_tolerates_the_virtual_kubelet_taint_but_not_others() -> None:
    rp = policy().unit("eci").build()
    ok = placed(place(pod("p").build(), snapshot([virtual()]), [rp], now_s=0))
    assert ok.node == VK
    other = virtual().taint("gpu-maintenance", "yes")
    out = refused(place(pod("p").build(), snapshot([other]), [rp], now_s=0))
    assert out.units[0] == LackResource(
        0, 1, (NodeCount(UntoleratedTaint("gpu-maintenance", "yes", "NoSchedule"), 1),)
    )


@pytest.mark.parametrize(
    ("tolerate", "effect", "expected"),
    [
        (False, "NoSchedule", "plain"),
        (True, "NoSchedule", "tainted"),  # tainted is fuller after placing: 2/2 > 1/4
        (False, "PreferNoSchedule", "tainted"),  # PreferNoSchedule does not repel
        (False, "NoExecute", "plain"),
    ],
)
def test_taints_and_tolerations(tolerate: bool, effect: str, expected: str) -> None:
    nodes = [node("plain", gpu=4), node("tainted", gpu=2).taint("dedicated", "llm", effect)]
    builder = pod("p")
    if tolerate:
        builder = builder.tolerate("dedicated", "Equal", "llm")
    snap = snapshot(nodes, [pod("o").on("tainted").label(app="other")])
    assert placed(place(builder.build(), snap, [], now_s=0)).node == expected


def test_unmatched_pod_uses_virtual_node_only_when_tolerating() -> None:
    snap = snapshot([idc(), virtual()], FULL_IDC)
    out = refused(place(pod("p").build(), snap, [], now_s=0))
    assert out.retry is Retry.LATER
    assert set(out.nodes) == {
        NodeCount(NO_GPU, 1),
        NodeCount(UntoleratedTaint("virtual-kubelet.io/provider", "alibabacloud", "NoSchedule"), 1),
    }
    tolerant = pod("p").tolerate("virtual-kubelet.io/provider").build()
    assert placed(place(tolerant, snap, [], now_s=0)).node == VK


def test_virtual_node_without_its_taint_is_still_opt_in() -> None:
    snap = snapshot([node("vk", gpu=8).virtual(taint=False)])
    assert isinstance(place(pod("p").build(), snap, [], now_s=0), Unschedulable)


def test_pod_node_selector_mismatch() -> None:
    rp = policy().seed_units().build()
    snap = snapshot([idc().label(zone="b"), virtual().label(zone="b")])
    wanted = pod("p").select(zone="a").build()
    out = refused(place(wanted, snap, [rp], now_s=0))
    # no node of any unit has zone=a: it can never fit as the cluster stands
    assert out.retry is Retry.NEVER and out.reasons[0] == NoEligibleNodes()
    result = filter_nodes(wanted, snap, [rp], 0, ["idc001", VK])
    assert result.allowed == ()
    assert result.rejected["idc001"] == NodeSelectorMismatch("zone", "a", "b")
    assert result.rejected[VK] == NodeSelectorMismatch("zone", "a", "b")


def test_binpacking_picks_the_fuller_node_then_name() -> None:
    nodes = [node("a", gpu=4), node("b", gpu=4), node("c", gpu=4)]
    # a: (2 + 1) / 4 = 0.75 after placing; b: (0 + 1) / 4 = 0.25; c: (1 + 1) / 4 = 0.5
    pods = [pod("x").on("a"), pod("y").on("a"), pod("z").on("c")]
    snap = snapshot(nodes, pods)
    assert placed(place(pod("p").build(), snap, [], now_s=0)).node == "a"
    # all empty: equal fractions, the smallest name wins
    assert placed(place(pod("p").build(), snapshot(nodes), [], now_s=0)).node == "a"
    # GPU first, CPU breaks ties: b and c both 1/4 GPU, c has 8 CPUs used -> (8 + 4) / 16
    ties = snapshot(nodes[1:], [pod("w", gpu=0, cpu=8).on("c")])
    assert placed(place(pod("p").build(), ties, [], now_s=0)).node == "c"


def test_cordoned_node_is_retry_later() -> None:
    snap = snapshot([idc().cordon()])
    out = refused(place(pod("p").build(), snap, [], now_s=0))
    assert out.retry is Retry.LATER
    assert out.nodes == (NodeCount(NodeUnschedulable(), 1),)


def test_pod_count_limit() -> None:
    # pods: 1 -> 1000 milli; one pod already there: 1 - 1 = 0 free
    snap = snapshot([node("n", gpu=8, pods=1)], [pod("o").on("n").label(app="o")])
    out = refused(place(pod("p").build(), snap, [], now_s=0))
    assert out.nodes == (NodeCount(InsufficientResource("pods", 1000, 0), 1),)
    # a node with no pods figure has no pod limit
    assert placed(place(pod("p").build(), snapshot([node("m", gpu=8)]), [], now_s=0))


@pytest.mark.parametrize(
    ("nodes", "pods", "retry", "reason"),
    [
        # 2 GPUs asked; idc001 has 1, the virtual node's quota caps it at 1: never
        ([idc(), virtual(quota=1)], [], Retry.NEVER, NeverFits(GPU, 2000, 1000)),
        # 2 GPUs asked; idc001 has 2 but 1 is taken, the virtual node's quota is used up
        (
            [idc(gpu=2), virtual(quota=1)],
            [pod("a").on("idc001", unit=0), pod("b").on(VK, unit=1)],
            Retry.LATER,
            None,
        ),
    ],
)
def test_never_possible_versus_retry_later(
    nodes: list[object], pods: list[object], retry: Retry, reason: object
) -> None:
    rp = policy().seed_units().build()
    out = refused(place(pod("p", gpu=2).build(), snapshot(nodes, pods), [rp], now_s=0))
    assert out.retry is retry
    assert out.reasons == ((reason,) if reason else ())  # preemptPolicy unset: not mentioned
    assert not any("preempt" in m for m in out.messages())


def test_preempt_policy_is_recorded() -> None:
    rp = policy().seed_units().set(preemptPolicy="BeforeNextUnit").build()
    assert placed(place(pod("p").build(), snapshot([idc()]), [rp], 0)).preempt_policy == (
        "BeforeNextUnit"
    )
    out = refused(place(pod("p").build(), snapshot([idc()], FULL_IDC), [rp], 0))
    assert NoPreemption("BeforeNextUnit") in out.reasons
    messages = out.messages()
    assert "does not preempt" in messages[-1]  # the real reasons first
    assert "does not preempt" not in messages[0]


def test_required_strategy_places_only_on_units() -> None:
    rp = policy().unit("ecs", IDC_POOL).set(strategy="required").build()
    snap = snapshot([idc(), node("elsewhere", gpu=8)], FULL_IDC)
    out = refused(place(pod("p").build(), snap, [rp], 0))
    assert out.retry is Retry.LATER and out.units == (LackResource(0, 1, (NodeCount(NO_GPU, 1),)),)


def test_pending_pod_already_in_snapshot_is_not_counted_against_itself() -> None:
    rp = policy().seed_units(max=1, podLabels={"tier": "idc"}).build()
    me = pod("p").label(tier="idc")
    snap = snapshot([idc(gpu=4), virtual()], [me])
    assert placed(place(me.build(), snap, [rp], 0)).unit == 0


# --- the extender: filter and prioritize ---------------------------------------------------


def test_filter_nodes_allows_only_the_unit_that_takes_the_pod() -> None:
    rp = seed_policy()
    nodes = [idc(), idc("idc002", gpu=2), virtual()]
    snap = snapshot(nodes, FULL_IDC)
    candidates = ["idc001", "idc002", VK, "gone"]
    result = filter_nodes(pod("p").build(), snap, [rp], 0, candidates)
    assert result.allowed == ("idc002",)
    assert result.rejected == {
        "idc001": NO_GPU,
        VK: OutsideUnit("deepseek", 0),
        "gone": NodeNotFound(),
    }
    assert placed(result.decision).node == "idc002"

    # restricted to the candidates kube-scheduler passed: unit 0 lacks room among them
    result = filter_nodes(pod("p").build(), snap, [rp], 0, ["idc001", VK])
    assert result.allowed == (VK,)
    assert result.rejected == {"idc001": OutsideUnit("deepseek", 1)}


def test_filter_nodes_when_nothing_fits() -> None:
    rp = policy().seed_units(max=3).when_try_next("TimeoutOrExceedMax").build()
    snap = snapshot([idc(), virtual()], FULL_IDC)
    result = filter_nodes(pod("p").build(), snap, [rp], 0, ["idc001", VK])
    assert result.allowed == ()
    assert result.rejected == {"idc001": NO_GPU, VK: OutsideUnit("deepseek", None)}
    assert refused(result.decision).retry_after_s == 900.0


def test_score_nodes_binpacks() -> None:
    nodes = [node("a", gpu=4, cpu=16), node("b", gpu=4, cpu=16), node("cpu-only", cpu=16)]
    pods = [pod("x", gpu=2, cpu=4).on("a")]
    snap = snapshot(nodes, pods)
    scores = {s.node: s.score for s in score_nodes(pod("p").build(), snap, [*snap.nodes, "gone"])}
    # a: gpu (2+1)/4 = 0.75, cpu (4+4)/16 = 0.5 -> floor(10 * (3*0.75 + 0.5) / 4) = 6
    # b: gpu 1/4, cpu 4/16 -> floor(10 * (3*0.25 + 0.25) / 4) = 2
    # cpu-only: no GPUs (the pod would not fit, but score only weighs): floor(10 * 4/16) = 2
    assert scores == {"a": 6, "b": 2, "cpu-only": 2, "gone": 0}


def test_with_pod_replaces_a_pod_of_the_same_name() -> None:
    snap = snapshot([idc(gpu=4)], [pod("p").on("idc001")])
    assert snap.nodes["idc001"].requested[GPU] == 1000
    moved = snap.with_pod(pod("p", gpu=2).on("idc001").build())
    # 1000 out, 2000 in
    assert moved.nodes["idc001"].requested[GPU] == 2000
    assert moved.nodes["idc001"].pods == 1 and len(moved.pods) == 1
    assert snap.nodes["idc001"].requested[GPU] == 1000  # the original is unchanged


def test_failed_pods_hold_nothing() -> None:
    snap = snapshot([idc()], [pod("dead").on("idc001", phase="Failed")])
    assert placed(place(pod("p").build(), snap, [seed_policy()], 0)).node == "idc001"


def test_policies_may_be_any_iterable_and_a_changed_list_is_reindexed() -> None:
    snap = snapshot([idc(), virtual()], FULL_IDC)
    assert placed(place(pod("p").build(), snap, iter([seed_policy()]), 0)).node == VK
    policies = [policy("other", app="x").unit("eci").build()]
    # no policy selects the pod: the tainted virtual node is off limits
    assert isinstance(place(pod("p").build(), snap, policies, 0), Unschedulable)
    policies.append(seed_policy())  # same list object, new contents
    assert placed(place(pod("p").build(), snap, policies, 0)).unit == 1


def test_a_unit_whose_nodes_kube_scheduler_already_dropped_says_so() -> None:
    # with nodeCacheCapable, kube-scheduler sends only the nodes its own filters kept: a
    # full IDC node is not a candidate, and "unit 0: no nodes" would be wrong
    rp = policy().seed_units().build()
    snap = snapshot([idc(), virtual()], FULL_IDC)
    result = filter_nodes(pod("new").build(), snap, [rp], 0.0, [VK])
    placed(result.decision)
    assert placed(result.decision).reasons == (LackResource(0, 0, (), filtered=1),)
    assert placed(result.decision).reasons[0].message() == (
        "unit 0: its 1 node was ruled out by kube-scheduler's own filters "
        "(no room, taint or selector)"
    )
