"""kube-scheduler's HTTP extender (filter, prioritize, bind) backed by the pure placement.

kube-scheduler POSTs ``ExtenderArgs`` (``Pod``, and ``Nodes`` or, with
``nodeCacheCapable: true``, ``NodeNames``) to ``/filter`` and ``/prioritize``, and
``ExtenderBindingArgs`` (``PodName``, ``PodNamespace``, ``PodUID``, ``Node``) to
``/bind``. Field names are capitalised; filter replies ``Nodes``/``NodeNames``,
``FailedNodes``, ``FailedAndUnresolvableNodes`` and ``Error``; prioritize replies
``[{"Host", "Score"}]`` with scores 0..10.

* filter: :func:`~tierserve.policy.placement.filter_nodes` over the cache's snapshot.
  A pod no ResourcePolicy selects passes through untouched (every candidate allowed).
  Nodes refused for a reason that cannot change (``Retry.NEVER``) go to
  ``FailedAndUnresolvableNodes`` so the scheduler does not try preemption for them.
* prioritize: :func:`~tierserve.policy.placement.score_nodes` (binpacking) for selected
  pods, 0 for the rest.
* bind: the unit's ``podLabels``/``podAnnotations`` and the unit's identity
  (``scheduling.tierserve.io/unit``, e.g. ``eci``; it survives a reorder of the units)
  are patched onto the pod, then the Binding is
  created.

*Assume*: kube-scheduler filters the next pod before it binds this one, and often before
the extender's own watch has delivered this one. So a placed pod is counted toward its
unit (``max``) at filter time from the pod object in the request itself, keyed by its UID,
not from the watch; bind assumes it again on the node actually chosen, and the watch
later confirms or replaces the assumption (:meth:`ClusterCache.assume`). A filter that
no longer places a pod drops its assumption.

``whenTryNextUnits`` timeouts work because kube-scheduler retries Pending pods: a pod
waiting in a unit is refused until its timeout passes (from its creation time).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tierserve.errors import NotFoundError, TierserveError
from tierserve.model.replica import Phase, Replica
from tierserve.policy.decisions import FilterResult, Placement, Retry, Unschedulable
from tierserve.policy.placement import bind, filter_nodes, score_nodes
from tierserve.policy.reasons import NodeReason
from tierserve.policy.units import UNIT_ANNOTATION, selects
from tierserve.runtime.kube.cache import ClusterCache
from tierserve.runtime.kube.client import MERGE_PATCH, Api, Obj
from tierserve.runtime.kube.convert import POLICY_ANNOTATION, replica_from_pod

log = logging.getLogger(__name__)


def _selected(pod: Replica, cache: ClusterCache) -> bool:
    return any(selects(p, pod) for p in cache.policies())


def _candidates(args: Obj) -> tuple[list[str], dict[str, Obj] | None]:
    """Node names from ``NodeNames`` (node cache capable) or ``Nodes`` (full objects)."""
    if args.get("NodeNames") is not None:
        return [str(n) for n in args["NodeNames"]], None
    items = (args.get("Nodes") or {}).get("items") or []
    by_name = {str(n["metadata"]["name"]): n for n in items}
    return list(by_name), by_name


def filter_reply(
    pod: Replica,
    names: list[str],
    full: dict[str, Obj] | None,
    cache: ClusterCache,
    now_s: float,
) -> tuple[Obj, FilterResult | None]:
    """The ExtenderFilterResult for ``pod`` (pure apart from reading the cache; the
    snapshot is taken only for a pod some policy selects)."""
    if not _selected(pod, cache):
        allowed, failed, unresolvable = names, {}, {}
        result = None
    else:
        result = filter_nodes(pod, cache.snapshot(), cache.policies(), now_s, names)
        allowed = list(result.allowed)
        decision = result.decision
        never = isinstance(decision, Unschedulable) and decision.retry is Retry.NEVER
        why = "; ".join(decision.messages()) if isinstance(decision, Unschedulable) else ""
        rendered: dict[NodeReason, str] = {}  # thousands of nodes share a few reasons
        messages = {}
        for n, r in result.rejected.items():
            text = rendered.get(r)
            if text is None:
                text = rendered[r] = f"{r.message()} ({why})" if why else r.message()
            messages[n] = text
        failed = {} if never else messages
        unresolvable = messages if never else {}
    reply: Obj = {
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": unresolvable,
        "Error": "",
    }
    if full is None:
        reply["NodeNames"] = allowed
        reply["Nodes"] = None
    else:
        reply["Nodes"] = {"metadata": {}, "items": [full[n] for n in allowed]}
        reply["NodeNames"] = None
    return reply, result


@dataclass
class Extender:
    """The extender's handlers over one cache and one API client."""

    cache: ClusterCache
    kube: Api | None
    clock: Callable[[], float] = time.time
    placements: dict[str, tuple[Replica, Placement]] = field(default_factory=dict)
    """The last filter's pod and placement per pod UID, for bind."""
    calls: dict[str, int] = field(default_factory=dict)

    def _count(self, verb: str) -> None:
        self.calls[verb] = self.calls.get(verb, 0) + 1

    def filter(self, args: Obj) -> Obj:
        self._count("filter")
        pod_obj = args["Pod"]
        pod = replica_from_pod(pod_obj)
        names, full = _candidates(args)
        reply, result = filter_reply(pod, names, full, self.cache, self.clock())
        uid = str(pod_obj.get("metadata", {}).get("uid", ""))
        if result is not None and isinstance(result.decision, Placement):
            self.placements[uid] = (pod, result.decision)
            if result.decision.node is not None:
                # kube-scheduler filters the next pod before binding this one: count it now
                self._assume(pod, result.decision.node, result.decision)
        else:
            self.placements.pop(uid, None)
            self.cache.unassume(pod.namespace, pod.name)
        if result is not None:
            log.info(
                "filter %s/%s: %d of %d nodes allowed; %s",
                pod.namespace,
                pod.name,
                len(result.allowed),
                len(names),
                _describe(result),
            )
        return reply

    def prioritize(self, args: Obj) -> list[Obj]:
        self._count("prioritize")
        pod = replica_from_pod(args["Pod"])
        names, _ = _candidates(args)
        if not _selected(pod, self.cache):
            return [{"Host": n, "Score": 0} for n in names]
        scores = score_nodes(pod, self.cache.snapshot(), names)
        return [{"Host": s.node, "Score": s.score} for s in scores]

    async def bind(self, args: Obj) -> Obj:
        self._count("bind")
        if self.kube is None:
            return {"Error": "this extender has no API client to bind with"}
        name, namespace = str(args["PodName"]), str(args["PodNamespace"])
        uid, node = str(args.get("PodUID", "")), str(args["Node"])
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        try:
            pod, placement = self.placements.pop(uid, (None, None))
            if pod is None or placement is None or placement.node is None:
                pod, placement = await self._replace(path, node)
            if placement is not None and placement.policy is not None:
                annotations = {**placement.pod_annotations, POLICY_ANNOTATION: placement.policy}
                if placement.unit_id is not None:
                    annotations[UNIT_ANNOTATION] = placement.unit_id
                patch = {"metadata": {"labels": placement.pod_labels, "annotations": annotations}}
                await self.kube.request("PATCH", path, patch, content_type=MERGE_PATCH)
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            await self.kube.request("POST", f"{path}/binding", binding)
        except TierserveError as exc:
            log.warning("bind %s/%s to %s failed: %s", namespace, name, node, exc)
            return {"Error": str(exc)}
        if pod is not None:
            self._assume(pod, node, placement)
        log.info(
            "bind %s/%s -> %s (unit %s)",
            namespace,
            name,
            node,
            placement.unit if placement else None,
        )
        return {"Error": ""}

    async def _replace(self, path: str, node: str) -> tuple[Replica, Placement | None]:
        """Decide again for a bind with no remembered filter (e.g. after a restart)."""
        assert self.kube is not None
        pod = replica_from_pod(await self.kube.request("GET", path))
        if not _selected(pod, self.cache):
            return pod, None
        result = filter_nodes(
            pod, self.cache.snapshot(), self.cache.policies(), self.clock(), [node]
        )
        return pod, result.decision if isinstance(result.decision, Placement) else None

    def _assume(self, pod: Replica, node: str, placement: Placement | None) -> None:
        """Count ``pod`` (as the request carried it) on ``node`` now."""
        if placement is not None:
            pod = bind(pod, placement)  # the unit's labels and annotations; node set below
        unit = placement.unit if placement is not None else None
        placed = pod.with_status(node_name=node, unit=unit, phase=Phase.STARTING)
        if not self.cache.assumed(placed):
            self.cache.assume(placed)


def _describe(result: FilterResult) -> str:
    decision = result.decision
    if isinstance(decision, Placement):
        return f"policy {decision.policy} unit {decision.unit}, best {decision.node}"
    return f"unschedulable ({decision.retry.value}): " + "; ".join(decision.messages())


def app(extender: Extender) -> web.Application:
    """The aiohttp application: POST /filter, /prioritize, /bind; GET /healthz, /metrics."""

    async def _json(request: web.Request) -> Any:
        return await request.json()

    async def filter_(request: web.Request) -> web.Response:
        try:
            return web.json_response(extender.filter(await _json(request)))
        except (TierserveError, KeyError, ValueError) as exc:
            log.exception("filter failed")
            return web.json_response({"Error": f"tierserve extender: {exc}"})

    async def prioritize(request: web.Request) -> web.Response:
        try:
            return web.json_response(extender.prioritize(await _json(request)))
        except (TierserveError, KeyError, ValueError) as exc:
            log.exception("prioritize failed")
            return web.json_response({"Error": str(exc)}, status=500)

    async def bind(request: web.Request) -> web.Response:
        try:
            return web.json_response(await extender.bind(await _json(request)))
        except (KeyError, ValueError, NotFoundError) as exc:
            return web.json_response({"Error": f"tierserve extender: {exc}"})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        lines = [
            "# TYPE tierserve_extender_calls_total counter",
            *(
                f'tierserve_extender_calls_total{{verb="{verb}"}} {count}'
                for verb, count in sorted(extender.calls.items())
            ),
            f"tierserve_extender_cache_nodes {len(extender.cache.nodes)}",
            f"tierserve_extender_cache_pods {len(extender.cache.pods)}",
            f"tierserve_extender_cache_policies {len(extender.cache.policy_map)}",
        ]
        return web.Response(text="\n".join(lines) + "\n")

    application = web.Application(client_max_size=256 * 2**20)
    application.router.add_post("/filter", filter_)
    application.router.add_post("/prioritize", prioritize)
    application.router.add_post("/bind", bind)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/metrics", metrics)
    return application


__all__ = ["Extender", "app", "filter_reply"]
