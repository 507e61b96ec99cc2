"""Scaling and rolling updates of one service's replicas (maxSurge 1, maxUnavailable 0)."""

from __future__ import annotations

import pytest
from builders import VK, idc, pod, virtual

from tierserve.model import Replica
from tierserve.policy.rollout import (
    ROLLING_UPDATE,
    SCALE_DOWN,
    TEMPLATE_HASH_LABEL,
    ReplicaPlan,
    plan,
    template_of,
)
from tierserve.policy.scalein import virtual_node_names

VIRTUAL = virtual_node_names([idc().build(), virtual().build()])
OLD, NEW = "oldhash", "newhash"


def rep(name: str, template: str, node: str = "idc001", phase: str = "Ready") -> Replica:
    unit = 0 if node == "idc001" else 1
    built: Replica = pod(name).label({TEMPLATE_HASH_LABEL: template}).on(node, unit, phase).build()
    return built


def names(p: ReplicaPlan) -> list[str]:
    return [r.name for r in p.terminate]


def test_template_from_label_else_from_name() -> None:
    assert template_of(rep("x", NEW)) == NEW
    assert template_of(pod("deepseek-predictor-bc4d2fghjk-x7z9q").build()) == "bc4d2fghjk"


@pytest.mark.parametrize(
    ("live", "want", "create", "terminated"),
    [
        ([], 2, 2, []),
        ([rep("a", NEW)], 1, 0, []),
        # surplus goes in scale-in order: cloud first
        ([rep("a", NEW), rep("b", NEW, VK)], 1, 0, ["b"]),
    ],
)
def test_plain_scaling(live: list[Replica], want: int, create: int, terminated: list[str]) -> None:
    out = plan(live, want, NEW, VIRTUAL)
    assert (out.create, names(out)) == (create, terminated)
    assert out.reason == (SCALE_DOWN if terminated else "")


def test_rolling_update_of_one_replica_surges_then_drains() -> None:
    # 1 old Ready: surge one new (total 2 = want 1 + surge 1), keep the old one
    step1 = plan([rep("old", OLD)], 1, NEW, VIRTUAL)
    assert (step1.create, names(step1), step1.reason) == (1, [], ROLLING_UPDATE)
    # the new one is still starting: nothing more, the old one keeps serving
    starting = [rep("old", OLD), rep("new", NEW, VK, "Starting")]
    assert (plan(starting, 1, NEW, VIRTUAL).create, names(plan(starting, 1, NEW, VIRTUAL))) == (
        0,
        [],
    )
    # the new one is Ready: 2 Ready > want 1, so the old one goes
    ready = [rep("old", OLD), rep("new", NEW, VK)]
    assert names(plan(ready, 1, NEW, VIRTUAL)) == ["old"]
    # done: only the new one is left
    assert plan([rep("new", NEW, VK)], 1, NEW, VIRTUAL) == ReplicaPlan()


def test_rolling_update_of_three_goes_one_at_a_time_cloud_first() -> None:
    old = [rep("i1", OLD), rep("c1", OLD, VK), rep("c2", OLD, VK)]
    assert (plan(old, 3, NEW, VIRTUAL).create, names(plan(old, 3, NEW, VIRTUAL))) == (1, [])
    # 3 old + 1 new Ready = 4 Ready, want 3: one old goes, a cloud one first
    step = plan([*old, rep("n1", NEW)], 3, NEW, VIRTUAL)
    assert (step.create, len(step.terminate)) == (0, 1)
    assert step.terminate[0].status.node_name == VK
    # with that one gone: 2 old + 1 new = 3, room for the next surge
    rest = [rep("i1", OLD), rep("c2", OLD, VK), rep("n1", NEW)]
    assert (plan(rest, 3, NEW, VIRTUAL).create, names(plan(rest, 3, NEW, VIRTUAL))) == (1, [])


def test_old_replicas_that_serve_nothing_go_at_once() -> None:
    live = [rep("old-ready", OLD), rep("old-pending", OLD, VK, "Pending")]
    out = plan(live, 2, NEW, VIRTUAL)
    # want 2, 1 Ready old: create up to 2 + 1 - 1 = 2 new, the Pending old one goes now
    assert (out.create, names(out)) == (2, ["old-pending"])


def test_ready_never_drops_below_want_during_an_update() -> None:
    # simulate ticks: each new replica becomes Ready one tick after it is created
    live = [rep(f"o{i}", OLD) for i in range(3)]
    made = 0
    for _ in range(20):
        out = plan(live, 3, NEW, VIRTUAL)
        gone = {r.name for r in out.terminate}
        # what was Ready stays Ready; last tick's new ones are Ready now
        live = [rep(r.name, template_of(r)) for r in live if r.name not in gone]
        assert len(live) >= 3  # never fewer than want Ready, new ones not counted yet
        live += [rep(f"n{made + i}", NEW, phase="Starting") for i in range(out.create)]
        made += out.create
        assert len(live) <= 4  # want + surge
    assert sorted(template_of(r) for r in live) == [NEW] * 3 and made == 3


def test_scale_down_during_an_update() -> None:
    live = [rep("o1", OLD), rep("o2", OLD), rep("o3", OLD)]
    out = plan(live, 1, NEW, VIRTUAL)
    assert (out.create, len(out.terminate)) == (0, 2)  # 3 Ready, want 1: two old go first
