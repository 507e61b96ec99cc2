"""Moving a cloud replica back to the IDC on Kubernetes (``policy.rebalance``), make
before break, with what a Deployment already does.

``policy.rebalance.move`` picks the cloud pod to give back when the IDC has room for one
more replica of a steady service (every pod Ready, at its wanted size). A Deployment has
no "replace this pod" verb, but its ReplicaSet scales down by
``controller.kubernetes.io/pod-deletion-cost``, which tierserve's controller keeps in the
scale-in order (cloud first, the newest first: the pod ``move`` picks). So:

1. **make**: scale to N + 1 and note the move on the Deployment
   (``autoscaling.tierserve.io/move``: the pod, N, when); the ResourcePolicy places the new
   pod on the IDC, which has room;
2. **break**: once all N + 1 pods are Ready and the moved pod's deletion cost is the
   lowest (the controller has ranked the new one), scale back to N: the ReplicaSet
   deletes the moved pod, which leaves routing at once and finishes its requests (its
   grace period);
3. the move ends when the pod is gone; one that has not finished within
   ``MOVE_TIMEOUT_S`` (no Ready replacement: the IDC filled up again) is abandoned, back
   to N.

While a move is under way the service is not evaluated (a move never competes with a
rescale). :func:`next_step` decides (pure); the autoscaler applies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from tierserve.policy.scalein import DELETION_COST_ANNOTATION
from tierserve.runtime.kube.client import Obj

MOVE_ANNOTATION = "autoscaling.tierserve.io/move"
"""On the Deployment while a move is under way (JSON: ``pod``, ``size``, ``atS``)."""
MOVE_TIMEOUT_S = 600.0
"""A move whose replacement is not Ready by then is given up (back to the old size)."""


@dataclass(frozen=True)
class Move:
    pod: str
    size: int
    """The size before the move (and after it)."""
    at_s: float

    def to_text(self) -> str:
        return json.dumps({"pod": self.pod, "size": self.size, "atS": self.at_s})

    @classmethod
    def from_text(cls, text: str) -> Move | None:
        """The annotation ``to_text`` wrote; None when it is not one (then it is cleared)."""
        try:
            doc = json.loads(text)
            return cls(str(doc["pod"]), int(doc["size"]), float(doc["atS"]))
        except (ValueError, KeyError, TypeError):
            return None


class Step(Enum):
    WAIT = "wait"
    SCALE_IN = "scale-in"
    """Back to the old size: the moved pod goes (lowest deletion cost)."""
    DONE = "done"
    ABANDON = "abandon"
    """Give up: back to the old size, whichever pod goes."""


def _ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _cost(pod: Obj) -> int | None:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def next_step(move: Move, current: int, pods: Sequence[Obj], now: float) -> Step:
    """What to do this period for ``move`` of a Deployment of ``current`` replicas whose
    pods are ``pods``."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    names = {p["metadata"]["name"] for p in live}
    if move.pod not in names:
        return Step.DONE
    if current == move.size:  # scaled in: the ReplicaSet deletes the pod next
        return Step.WAIT if len(live) > move.size else Step.DONE  # (another went: done)
    if current != move.size + 1 or now - move.at_s > MOVE_TIMEOUT_S:
        return Step.ABANDON
    if len(live) != move.size + 1 or not all(_ready(p) for p in live):
        return Step.WAIT  # the replacement is not Ready yet
    costs = {p["metadata"]["name"]: _cost(p) for p in live}
    mine = costs[move.pod]
    others = [c for n, c in costs.items() if n != move.pod]
    if mine is None or any(c is None or c <= mine for c in others):
        return Step.WAIT  # the controller has not ranked the replacement yet
    return Step.SCALE_IN


__all__ = ["MOVE_ANNOTATION", "MOVE_TIMEOUT_S", "Move", "Step", "next_step"]
