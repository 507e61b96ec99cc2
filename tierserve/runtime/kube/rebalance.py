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
rescale). ``policy.rebalance.next_step`` decides on the pods as :func:`moving_pods` reads
them; the autoscaler applies.
"""

from __future__ import annotations

from collections.abc import Sequence

from tierserve.policy.rebalance import MOVE_TIMEOUT_S, Move, MovingPod, Step, next_step
from tierserve.policy.scalein import DELETION_COST_ANNOTATION
from tierserve.runtime.kube.client import Obj

MOVE_ANNOTATION = "autoscaling.tierserve.io/move"
"""On the Deployment while a move is under way (``Move.to_text``: ``pod``, ``size``, ``atS``)."""


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


def moving_pods(pods: Sequence[Obj]) -> list[MovingPod]:
    """The Deployment's pods as the API returns them, as ``next_step`` reads them."""
    return [
        MovingPod(
            name=p["metadata"]["name"],
            ready=_ready(p),
            terminating=bool(p["metadata"].get("deletionTimestamp")),
            deletion_cost=_cost(p),
        )
        for p in pods
    ]


__all__ = ["MOVE_ANNOTATION", "MOVE_TIMEOUT_S", "Move", "Step", "moving_pods", "next_step"]
