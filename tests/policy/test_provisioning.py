"""Binding, cold start and the phase after binding, as pure functions."""

from __future__ import annotations

from builders import VK, idc, pod, policy, snapshot, virtual

from tierserve.model import Phase
from tierserve.model.replica import TIER_LABEL
from tierserve.policy import provisioning

IDC = idc().build()
VIRT = virtual().build()
NODES = {IDC.name: IDC, VIRT.name: VIRT}


def test_phase_after_binding_and_cold_start() -> None:
    assert provisioning.phase_after_binding(IDC) == Phase.STARTING
    assert provisioning.phase_after_binding(VIRT) == Phase.PROVISIONING
    assert provisioning.cold_start_s(IDC) == 0.0
    assert provisioning.cold_start_s(VIRT) == VIRT.spec.virtual.cold_start_seconds  # type: ignore[union-attr]


def test_pending_queue_is_oldest_first() -> None:
    a = pod("a").created(5).build()
    b = pod("b").created(1).build()
    placed = pod("c").on("idc001").build()
    assert [r.name for r in provisioning.pending([a, b, placed])] == ["b", "a"]


def test_schedule_one_binds_idc_first_then_the_cloud() -> None:
    policies = [policy(app="isvc.deepseek-predictor").seed_units().build()]
    snap = snapshot([IDC, VIRT], [])
    first, snap = provisioning.schedule_one(pod("a").build(), snap, NODES, policies, 100.0)
    second, snap = provisioning.schedule_one(pod("b").build(), snap, NODES, policies, 100.0)
    assert isinstance(first, provisioning.Bind) and isinstance(second, provisioning.Bind)
    assert (first.node.name, first.unit) == ("idc001", 0)
    assert first.replica.phase == Phase.STARTING
    assert first.replica.metadata.labels[TIER_LABEL] == "idc"
    assert (second.node.name, second.unit) == (VK, 1)
    assert second.replica.phase == Phase.PROVISIONING
    assert second.replica.status.scheduled_s == 100.0
    assert provisioning.bind_message(pod("b").build(), second) == (
        f"Successfully assigned default/b to {VK} (unit 1)"
    )


def test_schedule_one_says_why_it_waits() -> None:
    full = pod("x").on("idc001").build()
    snap = snapshot([IDC], [full])
    action, after = provisioning.schedule_one(pod("a").build(), snap, {IDC.name: IDC}, [], 0.0)
    assert isinstance(action, provisioning.Wait)
    assert "nvidia.com/gpu" in action.message
    assert after is snap


def test_provisioned_after_the_cold_start() -> None:
    cold = provisioning.cold_start_s(VIRT)
    r = pod("a").on(VK, 1, "Provisioning").build().with_status(scheduled_s=10.0)
    assert not provisioning.provisioned(r, VIRT, 10.0 + cold - 0.1)
    assert provisioning.provisioned(r, VIRT, 10.0 + cold)
    assert not provisioning.provisioned(r.with_status(phase=Phase.STARTING), VIRT, 1e9)


def test_a_cold_start_from_time_zero_ends() -> None:
    # virtual time starts at 0 (the simulator): 0 is a time, not "unset"
    cold = provisioning.cold_start_s(VIRT)
    r = pod("a").on(VK, 1, "Provisioning").build().with_status(scheduled_s=0.0)
    assert provisioning.provisioned(r, VIRT, cold)
    assert not provisioning.provisioned(r.with_status(scheduled_s=None), VIRT, 1e9)
