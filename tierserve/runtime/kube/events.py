"""Events on a Deployment, as tierserve's Kubernetes pieces record them.

A ``Normal`` Event is one new object per occurrence (``SuccessfulRescale``: each rescale
is news). A ``Warning`` is folded into one Event per Deployment and reason, named
``<deployment>.<reason>``, whose ``count`` and ``lastTimestamp`` go up on every repeat
(as the kubelet and the event recorder fold repeats): a budget that caps every period
is one Event with a count, not one a period.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from tierserve.errors import ConflictError, TierserveError
from tierserve.runtime.kube.client import MERGE_PATCH, Api, Obj

log = logging.getLogger(__name__)


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def record(
    kube: Api,
    deployment: Obj,
    reason: str,
    message: str,
    now: float,
    kind: str = "Normal",
    component: str = "tierserve",
) -> None:
    """Record an Event on ``deployment`` (a failure is logged, never raised: an Event is
    a report, not part of the action)."""
    meta = deployment["metadata"]
    namespace = meta.get("namespace", "default")
    at = stamp(now)
    folded = kind == "Warning"
    name = f"{meta['name']}.{reason.lower()}"
    naming = {"name": name} if folded else {"generateName": f"{meta['name']}."}
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {**naming, "namespace": namespace},
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": meta["name"],
            "namespace": namespace,
            "uid": meta.get("uid", ""),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }
    events = f"/api/v1/namespaces/{namespace}/events"
    try:
        try:
            await kube.request("POST", events, event)
        except ConflictError:
            if not folded:
                raise
            before = await kube.request("GET", f"{events}/{name}")
            patch = {
                "message": message,
                "lastTimestamp": at,
                "count": int(before.get("count") or 1) + 1,
            }
            await kube.request("PATCH", f"{events}/{name}", patch, content_type=MERGE_PATCH)
    except TierserveError as exc:
        log.warning("event for %s/%s: %s", namespace, meta["name"], exc)


__all__ = ["record", "stamp"]
