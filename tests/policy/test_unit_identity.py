"""A pod records its unit by the unit's identity, so editing a policy's units (reorder,
insert) under running pods still counts and orders each pod by the unit it is in."""

from __future__ import annotations

from builders import IDC_POOL, VK, idc, pod, policy, snapshot, virtual

from tierserve.policy.decisions import Placement, Unschedulable
from tierserve.policy.placement import bind, place
from tierserve.policy.snapshot import Snapshot
from tierserve.policy.units import UNIT_ANNOTATION, home_unit, unit_ids, unit_usage


def placed(decision: Placement | Unschedulable) -> Placement:
    assert isinstance(decision, Placement), decision
    return decision


def test_unit_ids_name_what_a_unit_holds_not_where_it_stands() -> None:
    rp = policy().unit("ecs", IDC_POOL).unit("eci", max=2).unit("eci").build()
    assert unit_ids(rp.spec.units) == (
        "ecs:alibabacloud.com/nodepool-id=np-idc",
        "eci",
        "eci#2",
    )


def test_placement_records_the_unit_identity_on_the_pod() -> None:
    rp = policy().seed_units().build()
    snap = snapshot([idc(), virtual()])
    new = pod("p0").build()
    decision = placed(place(new, snap, [rp], now_s=0))
    assert (decision.unit, decision.unit_id) == (0, "ecs:alibabacloud.com/nodepool-id=np-idc")
    assert bind(new, decision).metadata.annotations[UNIT_ANNOTATION] == decision.unit_id


def _seed_fleet() -> Snapshot:
    """One pod on the IDC (unit ecs), two on the virtual node (unit eci, max 2), placed
    under ``[ecs, eci max 2]``."""
    rp = policy().unit("ecs", IDC_POOL).unit("eci", max=2).build()
    snap = snapshot([idc(), virtual()])
    names = []
    for i in range(3):
        new = pod(f"p{i}").created(float(i)).build()
        decision = placed(place(new, snap, [rp], now_s=10.0))
        snap = snap.with_pod(bind(new, decision).with_status(phase="Ready"))
        names.append(f"{decision.node}")
    assert names == ["idc001", VK, VK]
    return snap


def test_reordered_units_still_count_each_pod_in_its_own_unit() -> None:
    snap = _seed_fleet()
    reordered = policy().unit("eci", max=2).unit("ecs", IDC_POOL).build()
    # unit 0 is now eci: it holds the two virtual pods, not the IDC one
    assert unit_usage(snap, reordered, 0, ()).count == 2
    assert unit_usage(snap, reordered, 1, ()).count == 1
    assert {p.name: home_unit(snap, reordered, p) for p in snap.pods} == {
        "p0": 1,
        "p1": 0,
        "p2": 0,
    }
    # eci is at its max: a fourth pod goes on to ecs (full), and waits, with eci's reason
    decision = place(pod("p3").build(), snap, [reordered], now_s=10.0)
    assert isinstance(decision, Unschedulable)
    assert "unit 0: 2 pods of max 2" in " ".join(decision.messages())


def test_lowered_max_after_a_reorder_lets_room_be_counted_right() -> None:
    snap = _seed_fleet()
    # eci first with max 3: one more fits there (2 of 3), though the IDC pod was placed
    # when ecs was unit 0
    reordered = policy().unit("eci", max=3).unit("ecs", IDC_POOL).build()
    decision = placed(place(pod("p3").build(), snap, [reordered], now_s=10.0))
    assert (decision.node, decision.unit) == (VK, 0)


def test_a_pod_whose_unit_is_gone_counts_by_its_node() -> None:
    rp = policy().unit("ecs", IDC_POOL).unit("eci", max=2).build()
    nodes = [idc(), virtual().label(type="virtual-kubelet")]
    snap = snapshot(nodes)
    for i in range(3):
        new = pod(f"p{i}").created(float(i)).build()
        snap = snap.with_pod(bind(new, placed(place(new, snap, [rp], now_s=10.0))))
    # the eci unit now selects nodes by label: its identity changed, so the virtual pods
    # count in the first unit holding their node
    edited = policy().unit("ecs", IDC_POOL).unit("eci", {"type": "virtual-kubelet"}).build()
    units = {p.name: home_unit(snap, edited, p) for p in snap.pods}
    assert units == {"p0": 0, "p1": 1, "p2": 1}


def test_the_older_index_form_is_still_read() -> None:
    rp = policy().seed_units().build()
    legacy = pod("old").on(VK, unit=1).annotate({UNIT_ANNOTATION: "1"}).build()
    snap = snapshot([idc(), virtual()], [legacy])
    assert home_unit(snap, rp, snap.pods[0]) == 1
