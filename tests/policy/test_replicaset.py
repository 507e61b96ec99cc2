"""The service controller as a pure function: desired vs live -> create / terminate / replace."""

from __future__ import annotations

from typing import Any

from builders import VK, idc, pod, virtual

from tierserve.model import InferenceService, Node, Replica
from tierserve.policy import replicaset
from tierserve.policy.naming import template_hash
from tierserve.policy.replicaset import Create, Replace, Terminate
from tierserve.policy.rollout import TEMPLATE_HASH_LABEL


def service(replicas: int = 1, **spec: Any) -> InferenceService:
    svc: InferenceService = InferenceService.new(
        "deepseek",
        "default",
        spec={"gpus": 1, "replicas": replicas, "command": "vllm serve m", **spec},
    )
    return svc


SVC = service()
TEMPLATE = template_hash(SVC)
NODES: dict[str, Node] = {n.name: n for n in (idc().build(), virtual().build())}


def rep(name: str, node: str = "idc001", phase: str = "Ready", **status: Any) -> Replica:
    unit = 1 if node == VK else 0
    built = pod(name).label({TEMPLATE_HASH_LABEL: TEMPLATE}).on(node, unit, phase).build()
    return built.with_status(**status) if status else built


def decide(services: list[InferenceService], replicas: list[Replica]) -> list[replicaset.Action]:
    return replicaset.decide({(s.namespace, s.name): s for s in services}, replicas, NODES)


def test_creates_up_to_the_wanted_count_on_the_current_template() -> None:
    actions = decide([service(3)], [rep("a")])
    assert actions == [Create(service(3), TEMPLATE), Create(service(3), TEMPLATE)]


def test_scale_in_terminates_cloud_first_with_a_service_event() -> None:
    actions = decide([service(1)], [rep("a"), rep("b", VK)])
    assert len(actions) == 1
    (action,) = actions
    assert isinstance(action, Terminate)
    assert action.replica.name == "b"
    assert action.reason == "ScaleDown"
    assert action.service_event == "Deleted replica: b"


def test_replicas_of_a_deleted_service_or_a_vanished_node_are_terminated() -> None:
    orphan = rep("a")
    on_gone_node = rep("b", node="idc-gone")
    actions = decide([], [orphan])
    assert actions == [Terminate(orphan, replicaset.SERVICE_DELETED)]
    actions = decide([SVC], [on_gone_node])
    assert actions[0] == Terminate(on_gone_node, replicaset.NODE_DELETED)
    # ... and the service gets a new one in the same pass
    assert actions[1:] == [Create(SVC, TEMPLATE)]


def test_a_terminating_replica_is_left_alone_and_not_counted() -> None:
    going = rep("a", phase="Terminating")
    assert decide([], [going]) == []
    assert decide([SVC], [going]) == [Create(SVC, TEMPLATE)]


def test_failed_replica_is_replaced_with_its_message() -> None:
    failed = rep("a", phase="Failed", message="start timeout")
    actions = decide([SVC], [failed])
    assert actions == [
        Replace(failed, SVC, "Replica a failed: start timeout; replacing it"),
        Create(SVC, TEMPLATE),
    ]


def test_deletion_asked_for_terminates_and_the_service_replaces_it() -> None:
    asked = rep("a")
    meta = asked.metadata.model_copy(update={"deletion_timestamp": "2026-12-01T00:00:00Z"})
    asked = asked.model_copy(update={"metadata": meta})
    assert decide([SVC], [asked]) == [
        Terminate(asked, replicaset.DELETED),
        Create(SVC, TEMPLATE),
    ]


def test_at_size_nothing_happens() -> None:
    assert decide([service(2)], [rep("a"), rep("b", VK)]) == []
