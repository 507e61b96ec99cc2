"""Moving a cloud replica back to the IDC: when, which one, and make before break."""

from __future__ import annotations

from typing import Any

from builders import VK, idc, pod, virtual

from tierserve.model import InferenceService, Node, Replica
from tierserve.policy import rebalance, replicaset
from tierserve.policy.naming import template_hash
from tierserve.policy.planner import Tier
from tierserve.policy.replicaset import MOVE_ANNOTATION, MOVED, Create, Terminate
from tierserve.policy.rollout import TEMPLATE_HASH_LABEL

NODES: dict[str, Node] = {n.name: n for n in (idc().build(), virtual().build())}


def service(
    replicas: int = 2, rebalance_: bool | None = None, moving: str = ""
) -> InferenceService:
    autoscaling: dict[str, Any] = {"policy": "slo", "slo": {"ttftSeconds": 2}}
    if rebalance_ is not None:
        autoscaling["rebalance"] = rebalance_
    meta = {"annotations": {MOVE_ANNOTATION: moving}} if moving else {}
    svc: InferenceService = InferenceService.new(
        "deepseek",
        "default",
        metadata=meta,
        spec={
            "gpus": 1,
            "replicas": replicas,
            "command": "vllm serve m",
            "autoscaling": autoscaling,
        },
    )
    return svc


def rep(name: str, node: str, phase: str = "Ready", created: float = 0.0) -> Replica:
    template = template_hash(service())
    unit = 1 if node == VK else 0
    built: Replica = (
        pod(name)
        .label({TEMPLATE_HASH_LABEL: template})
        .on(node, unit, phase)
        .created(created)
        .build()
    )
    return built


def tiers(room: int) -> list[Tier]:
    return [Tier("idc", 1, room, 36.0), Tier("cloud", 1, 8, 81.0, 2.5)]


def test_moves_the_newest_cloud_replica_when_the_idc_has_room() -> None:
    replicas = [rep("a", "idc001"), rep("b", VK, created=1), rep("c", VK, created=2)]
    victim = rebalance.move(service(3), replicas, NODES, tiers(room=1))
    assert victim is not None and victim.name == "c"


def test_no_move_without_room_while_scaling_or_when_off() -> None:
    replicas = [rep("a", "idc001"), rep("b", VK)]
    assert rebalance.move(service(2), replicas, NODES, tiers(room=0)) is None
    assert rebalance.move(service(3), replicas, NODES, tiers(room=1)) is None  # not at size
    starting = [rep("a", "idc001"), rep("b", VK, phase="Starting")]
    assert rebalance.move(service(2), starting, NODES, tiers(room=1)) is None  # not steady
    assert rebalance.move(service(2, rebalance_=False), replicas, NODES, tiers(1)) is None
    assert rebalance.move(service(2, moving="b"), replicas, NODES, tiers(room=1)) is None


def test_the_move_is_make_before_break() -> None:
    svc = service(2, moving="b")
    # the replacement first (a surge of one)
    actions = replicaset.decide(
        {("default", "deepseek"): svc}, [rep("a", "idc001"), rep("b", VK)], NODES
    )
    assert actions == [Create(svc, template_hash(svc))]
    # while it starts, nothing goes
    starting = [rep("a", "idc001"), rep("b", VK), rep("n", "idc001", phase="Starting")]
    assert replicaset.decide({("default", "deepseek"): svc}, starting, NODES) == []
    # once it is Ready, the cloud replica goes (it drains: Terminating leaves routing)
    ready = [rep("a", "idc001"), rep("b", VK), rep("n", "idc001")]
    (action,) = replicaset.decide({("default", "deepseek"): svc}, ready, NODES)
    assert isinstance(action, Terminate) and action.replica.name == "b"
    assert action.reason == MOVED
