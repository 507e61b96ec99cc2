"""Scale-in order and pod-deletion-cost: last unit first, not-ready first, newest first."""

from __future__ import annotations

import pytest
from builders import VK, idc, pod, virtual

from tierserve.model import Replica
from tierserve.policy.scalein import (
    INT32_MAX,
    READY_STEP,
    TIER_STEP,
    deletion_cost,
    scale_in_order,
    virtual_node_names,
)

VIRTUAL = virtual_node_names([idc().build(), virtual().build()])


def names(replicas: tuple[Replica, ...]) -> list[str]:
    return [r.name for r in replicas]


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        # reverse unit order: unit 2, then 1, then 0
        (
            [pod("u0").on("idc001", 0), pod("u2").on(VK, 2), pod("u1").on("n1", 1)],
            ["u2", "u1", "u0"],
        ),
        # same unit: not ready (Starting, Provisioning, Pending) before Ready
        (
            [
                pod("ready").on(VK, 1).created(5),
                pod("starting").on(VK, 1, phase="Starting").created(1),
                pod("prov").on(VK, 1, phase="Provisioning").created(2),
            ],
            ["prov", "starting", "ready"],
        ),
        # same unit and readiness: newest first, ties by name
        (
            [
                pod("old").on(VK, 1).created(1),
                pod("new-b").on(VK, 1).created(9),
                pod("new-a").on(VK, 1).created(9),
            ],
            ["new-a", "new-b", "old"],
        ),
        # unit beats readiness: a ready cloud replica goes before a starting IDC one
        (
            [pod("idc").on("idc001", 0, phase="Starting"), pod("cloud").on(VK, 1)],
            ["cloud", "idc"],
        ),
        # Terminating replicas are already going: left out
        (
            [pod("bye").on(VK, 1, phase="Terminating"), pod("stay").on("idc001", 0)],
            ["stay"],
        ),
        # no unit recorded: unassigned, then virtual node, then units, then IDC
        (
            [
                pod("idc-free").on("idc001"),
                pod("unit0").on("idc001", 0),
                pod("vk-free").on(VK),
                pod("nowhere"),
            ],
            ["nowhere", "vk-free", "unit0", "idc-free"],
        ),
    ],
)
def test_scale_in_order(replicas: list[object], expected: list[str]) -> None:
    built = [r.build() for r in replicas]  # type: ignore[attr-defined]
    assert names(scale_in_order(built, VIRTUAL)) == expected
    # deletion cost: lower goes first, so sorting by cost gives the same order
    costs = deletion_cost(built, VIRTUAL)
    assert sorted(costs, key=costs.__getitem__) == expected
    assert len(set(costs.values())) == len(costs)
    assert all(0 <= c <= INT32_MAX for c in costs.values())


def test_seed_three_to_one_removes_the_two_virtual_replicas() -> None:
    replicas = [
        pod("deepseek-0").on("idc001", 0).created(0).build(),
        pod("deepseek-1").on(VK, 1).created(100).build(),
        pod("deepseek-2").on(VK, 1).created(101).build(),
    ]
    order = scale_in_order(replicas, VIRTUAL)
    assert names(order[:2]) == ["deepseek-2", "deepseek-1"]
    costs = deletion_cost(replicas, VIRTUAL)
    # units = 2; unit 1 -> tier_keep 2 + (2 - 1 - 1) = 2, unit 0 -> 3; all ready
    # deepseek-2: 2 * 2**20 + 2**19 + 0 = 2621440; deepseek-1: ... + 1 = 2621441
    # deepseek-0: 3 * 2**20 + 2**19 + 0 = 3670016
    assert costs == {
        "deepseek-2": 2 * TIER_STEP + READY_STEP,
        "deepseek-1": 2 * TIER_STEP + READY_STEP + 1,
        "deepseek-0": 3 * TIER_STEP + READY_STEP,
    }


def test_deletion_cost_changes_only_within_the_new_replicas_group() -> None:
    before = [pod("a").on("idc001", 0).created(0).build(), pod("b").on(VK, 1).created(1).build()]
    after = [*before, pod("c").on(VK, 1).created(2).build()]
    old, new = deletion_cost(before, VIRTUAL), deletion_cost(after, VIRTUAL)
    assert new["a"] == old["a"]  # another tier: untouched
    assert new["c"] < new["b"]  # the newest cloud replica goes first
