"""Moving a cloud pod back to the IDC on Kubernetes: the steps of a move (pure), from the
pods of the Deployment as the API returns them."""

from __future__ import annotations

from typing import Any

import pytest

from tierserve.runtime.kube.rebalance import MOVE_TIMEOUT_S, Move, Step, moving_pods, next_step

MOVE = Move("busy-cloud", size=2, at_s=100.0)


def pod(name: str, ready: bool = True, cost: int | None = None, deleting: bool = False) -> Any:
    meta: dict[str, Any] = {"name": name, "annotations": {}}
    if cost is not None:
        meta["annotations"]["controller.kubernetes.io/pod-deletion-cost"] = str(cost)
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    status = "True" if ready else "False"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": status}]}}


IDC, NEW = pod("busy-idc", cost=200), pod("busy-idc-new", cost=100)


@pytest.mark.parametrize(
    ("current", "pods", "now", "step"),
    [
        # made: 3 of size 2 + 1, the replacement still starting
        (3, [IDC, pod("busy-cloud", cost=0), pod("busy-idc-new", ready=False)], 110, Step.WAIT),
        # Ready, but the controller has not ranked it yet (no cost: it could go instead)
        (3, [IDC, pod("busy-cloud", cost=0), pod("busy-idc-new")], 110, Step.WAIT),
        # ranked above the cloud pod: scale back to 2, the cloud pod goes
        (3, [IDC, pod("busy-cloud", cost=0), NEW], 110, Step.SCALE_IN),
        # scaled in, the ReplicaSet has not deleted it yet
        (2, [IDC, pod("busy-cloud", cost=0), NEW], 111, Step.WAIT),
        # it is Terminating (finishing its requests): the move is done
        (2, [IDC, pod("busy-cloud", cost=0, deleting=True), NEW], 112, Step.DONE),
        # another pod went instead: the size is right, the move is over
        (2, [IDC, pod("busy-cloud", cost=0)], 112, Step.DONE),
        # no Ready replacement in time (the IDC filled up again): give up
        (3, [IDC, pod("busy-cloud", cost=0), pod("busy-idc-new", ready=False)],
         100 + MOVE_TIMEOUT_S + 1, Step.ABANDON),
        # someone rescaled meanwhile: the move is off
        (5, [IDC, pod("busy-cloud", cost=0), NEW], 110, Step.ABANDON),
    ],
)  # fmt: skip
def test_the_steps_of_a_move(current: int, pods: list[Any], now: float, step: Step) -> None:
    assert next_step(MOVE, current, moving_pods(pods), now) is step


def test_the_annotation_round_trips_and_garbage_reads_as_none() -> None:
    assert Move.from_text(MOVE.to_text()) == MOVE
    assert Move.from_text("{not json") is None
    assert Move.from_text('{"pod": "x"}') is None
