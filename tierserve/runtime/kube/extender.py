"""kube-scheduler's HTTP extender (filter, prioritize, bind) backed by the pure placement.

kube-scheduler POSTs ``ExtenderArgs`` (``Pod``, and ``Nodes`` or, with
``nodeCacheCapable: true``, ``NodeNames``) to ``/filter`` and ``/prioritize``, and
``ExtenderBindingArgs`` (``PodName``, ``PodNamespace``, ``PodUID``, ``Node``) to
``/bind``. Field names are capitalised; filter replies ``Nodes``/``NodeNames``,
``FailedNodes``, ``FailedAndUnresolvableNodes`` and ``Error``; prioritize replies
``[{"Host", "Score"}]`` with scores 0..10.

* filter: :func:`~tierserve.policy.placement.filter_nodes` over the cache's snapshot.
  A pod no ResourcePolicy selects passes through untouched (every candidate allowed).
  For a pod that cannot go anywhere now, each refused node comes with its reason; those
  refused for a reason that cannot change (``Retry.NEVER``) go to
  ``FailedAndUnresolvableNodes`` so the scheduler does not try preemption for them. For
  a placed pod only the allowed nodes are sent.
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

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tierserve.errors import NotFoundError, TierserveError
from tierserve.model.replica import Phase, Replica
from tierserve.model.resources import Toleration
from tierserve.policy.admission import pod_defaults
from tierserve.policy.decisions import FilterResult, Placement, Retry, Unschedulable
from tierserve.policy.placement import bind, filter_nodes, score_nodes
from tierserve.policy.reasons import NodeReason, PodRejected
from tierserve.policy.units import UNIT_ANNOTATION, selects
from tierserve.runtime.kube.cache import ClusterCache
from tierserve.runtime.kube.client import MERGE_PATCH, Api, Obj
from tierserve.runtime.kube.convert import POLICY_ANNOTATION, replica_from_pod
from tierserve.runtime.kube.frontproxy import client_name

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
    all_feasible: bool = False,
) -> tuple[Obj, FilterResult | None]:
    """The ExtenderFilterResult for ``pod`` (pure apart from reading the cache; the
    snapshot is taken only for a pod some policy selects).

    A placed pod is allowed its best node only (binpacking in the unit, as prioritize
    scores): kube-scheduler then skips scoring and the prioritize call, one round trip
    less per pod. ``all_feasible`` allows every fitting node of the unit instead, for
    kube-scheduler's own scoring (spreading, preferred affinity) to weigh in."""
    if not _selected(pod, cache):
        allowed, failed, unresolvable = names, {}, {}
        result = None
    else:
        result = filter_nodes(pod, cache.snapshot(), cache.policies(), now_s, names)
        decision = result.decision
        if isinstance(decision, Placement) and not all_feasible:
            allowed = [decision.node]
        else:
            allowed = list(result.allowed)
        never = isinstance(decision, Unschedulable) and decision.retry is Retry.NEVER
        why = "; ".join(decision.messages()) if isinstance(decision, Unschedulable) else ""
        rendered: dict[NodeReason, str] = {}  # thousands of nodes share a few reasons
        messages = {}
        # A placed pod will be scheduled: kube-scheduler reads the failed nodes' reasons
        # only to explain a failure (and for preemption), so they are not sent; with
        # thousands of candidates they were most of every reply's bytes.
        rejected = result.rejected if isinstance(decision, Unschedulable) else {}
        for n, r in rejected.items():
            text = rendered.get(r)
            if text is None:
                # a pod rejected as a whole already says why: do not say it twice
                said = why and not isinstance(r, PodRejected)
                text = rendered[r] = f"{r.message()} ({why})" if said else r.message()
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


@dataclass(frozen=True)
class _Filtered:
    """What the last filter of a pod decided, for its bind."""

    pod: Replica
    scheduler_name: str
    placement: Placement | None
    """The placement for a pod a policy selects (None: no policy, or not placeable)."""
    allowed: frozenset[str] | None
    """The nodes the filter allowed a selected pod; None for a pod no policy selects
    (kube-scheduler's own filters decided: bind checks the node's fit afresh)."""
    at_s: float


FORGET_AFTER_S = 300.0
"""A filter never followed by a bind (the pod was deleted, or bound elsewhere) is
forgotten after this long."""


class BindRefused(TierserveError):
    """A bind the extender will not do (wrong scheduler, a node the pod may not use)."""


@dataclass
class Extender:
    """The extender's handlers over one cache and one API client."""

    cache: ClusterCache
    kube: Api | None
    clock: Callable[[], float] = time.time
    scheduler_name: str = "tierserve-scheduler"
    """The kube-scheduler profile this extender serves: bind refuses other pods."""
    all_feasible: bool = False
    """Allow every fitting node of the unit, not only the best (see :func:`filter_reply`)."""
    filtered: dict[str, _Filtered] = field(default_factory=dict)
    """The last filter per pod UID, for bind."""
    calls: dict[str, int] = field(default_factory=dict)
    leading: asyncio.Event | None = None
    """With leader election: set while this replica holds the Lease (a standby answers
    the verbs with 503 and reports not ready)."""
    metrics: ExtenderMetrics = field(default_factory=lambda: ExtenderMetrics())

    def _count(self, verb: str) -> None:
        self.calls[verb] = self.calls.get(verb, 0) + 1

    def filter(self, args: Obj) -> Obj:
        self._count("filter")
        pod_obj = args["Pod"]
        pod = replica_from_pod(pod_obj)
        names, full = _candidates(args)
        now_s = self.clock()
        reply, result = filter_reply(pod, names, full, self.cache, now_s, self.all_feasible)
        uid = str(pod_obj.get("metadata", {}).get("uid", ""))
        scheduler = str((pod_obj.get("spec") or {}).get("schedulerName") or "default-scheduler")
        self._forget_stale(now_s)
        if result is None:
            self.filtered[uid] = _Filtered(pod, scheduler, None, None, now_s)
        elif isinstance(result.decision, Placement):
            allowed = frozenset(result.allowed if self.all_feasible else [result.decision.node])
            self.filtered[uid] = _Filtered(pod, scheduler, result.decision, allowed, now_s)
            if result.decision.node is not None:
                # kube-scheduler filters the next pod before binding this one: count it now
                self._assume(pod, result.decision.node, result.decision)
        else:
            self.filtered.pop(uid, None)
            self.cache.unassume(pod.namespace, pod.name)
        self.metrics.decisions.labels(*decision_labels(result)).inc()
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

    def _forget_stale(self, now_s: float) -> None:
        if len(self.filtered) < 1024:
            return
        for uid in [u for u, f in self.filtered.items() if now_s - f.at_s > FORGET_AFTER_S]:
            del self.filtered[uid]

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
            filtered = self.filtered.pop(uid, None)
            if filtered is None:
                filtered = await self._filter_again(path, uid, node)
            self._check_bind(filtered, node)
            placement = filtered.placement
            meta: Obj = {"name": name, "namespace": namespace, "uid": uid}
            if placement is not None and placement.policy is not None:
                annotations = {**placement.pod_annotations, POLICY_ANNOTATION: placement.policy}
                if placement.unit_id is not None:
                    annotations[UNIT_ANNOTATION] = placement.unit_id
                # the API server copies a Binding's annotations onto the pod as it binds:
                # one request per bind; the unit's podLabels still need a patch first
                meta["annotations"] = annotations
                if placement.pod_labels:
                    patch = {"metadata": {"labels": placement.pod_labels}}
                    await self.kube.request("PATCH", path, patch, content_type=MERGE_PATCH)
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": meta,
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            await self.kube.request("POST", f"{path}/binding", binding)
        except BindRefused as exc:
            log.warning("bind %s/%s to %s refused: %s", namespace, name, node, exc)
            self.metrics.binds.labels("refused").inc()
            self.cache.unassume(namespace, name)
            return {"Error": f"tierserve extender: {exc}"}
        except TierserveError as exc:
            log.warning("bind %s/%s to %s failed: %s", namespace, name, node, exc)
            self.metrics.binds.labels("failed").inc()
            self.cache.unassume(namespace, name)  # not bound: it must not hold room
            return {"Error": str(exc)}
        self.metrics.binds.labels("bound").inc()
        self._assume(filtered.pod, node, placement)
        log.info(
            "bind %s/%s -> %s (unit %s)",
            namespace,
            name,
            node,
            placement.unit_id if placement else None,
        )
        return {"Error": ""}

    def admit(self, review: Obj) -> Obj:
        """A mutating admission webhook's answer (``admission.k8s.io/v1`` AdmissionReview)
        for a pod being created: the defaults its ResourcePolicy needs
        (:func:`~tierserve.policy.admission.pod_defaults`) as a JSONPatch. Always
        allowed: the webhook only fills in, it never refuses a pod."""
        self._count("admit")
        request = review.get("request") or {}
        response: Obj = {"uid": request.get("uid", ""), "allowed": True}
        obj = request.get("object") or {}
        if request.get("operation", "CREATE") != "CREATE" or obj.get("kind", "Pod") != "Pod":
            return _review(review, response)
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        namespace = str(request.get("namespace") or meta.get("namespace") or "default")
        tolerations = [
            Toleration(
                key=t.get("key", ""),
                operator=t.get("operator", "Equal"),
                value=t.get("value", ""),
                effect=t.get("effect", ""),
            )
            for t in spec.get("tolerations") or []
        ]
        defaults = pod_defaults(
            namespace,
            meta.get("labels") or {},
            spec.get("schedulerName"),
            tolerations,
            self.cache.policies(),
            self.scheduler_name,
        )
        if defaults is None or not defaults.changes:
            return _review(review, response)
        patch: list[Obj] = []
        if defaults.scheduler_name is not None:
            patch.append(
                {"op": "add", "path": "/spec/schedulerName", "value": defaults.scheduler_name}
            )
        if defaults.toleration is not None:
            value = defaults.toleration.to_dict()
            if spec.get("tolerations"):
                patch.append({"op": "add", "path": "/spec/tolerations/-", "value": value})
            else:
                patch.append({"op": "add", "path": "/spec/tolerations", "value": [value]})
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        response["warnings"] = [defaults.reason]
        name = meta.get("name") or f"{meta.get('generateName', '')}*"
        log.info("admit pod %s/%s: %s", namespace, name, defaults.reason)
        return _review(review, response)

    def _check_bind(self, filtered: _Filtered, node: str) -> None:
        """Refuse a bind for a pod another scheduler owns, or to a node it may not use."""
        pod = filtered.pod
        if filtered.scheduler_name != self.scheduler_name:
            raise BindRefused(
                f"pod {pod.namespace}/{pod.name} has schedulerName "
                f"{filtered.scheduler_name!r}, not {self.scheduler_name!r}: another "
                "scheduler owns it"
            )
        if filtered.allowed is not None:
            if node not in filtered.allowed:
                raise BindRefused(
                    f"node {node} is not one the filter allowed pod {pod.namespace}/{pod.name}"
                )
            return
        result = filter_nodes(
            pod, self.cache.snapshot(), self.cache.policies(), self.clock(), [node]
        )
        if node not in result.allowed:
            why = result.rejected.get(node)
            raise BindRefused(
                f"pod {pod.namespace}/{pod.name} does not fit node {node}"
                + (f": {why.message()}" if why is not None else "")
            )

    async def _filter_again(self, path: str, uid: str, node: str) -> _Filtered:
        """Decide again for a bind with no remembered filter (after a restart, or a bind
        no filter preceded), from the pod as the API server has it."""
        assert self.kube is not None
        obj = await self.kube.request("GET", path)
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        if uid and meta.get("uid") != uid:
            raise BindRefused(f"{path}: UID {meta.get('uid')}, not {uid} (the pod was replaced)")
        if spec.get("nodeName"):
            raise BindRefused(f"{path}: already bound to {spec['nodeName']}")
        pod = replica_from_pod(obj)
        scheduler = str(spec.get("schedulerName") or "default-scheduler")
        now_s = self.clock()
        if not _selected(pod, self.cache):
            return _Filtered(pod, scheduler, None, None, now_s)
        result = filter_nodes(pod, self.cache.snapshot(), self.cache.policies(), now_s, [node])
        if not isinstance(result.decision, Placement):
            raise BindRefused(
                f"pod {pod.namespace}/{pod.name} cannot go to {node} now: "
                + "; ".join(result.decision.messages())
            )
        return _Filtered(pod, scheduler, result.decision, frozenset(result.allowed), now_s)

    def _assume(self, pod: Replica, node: str, placement: Placement | None) -> None:
        """Count ``pod`` (as the request carried it) on ``node`` now."""
        if placement is not None:
            pod = bind(pod, placement)  # the unit's labels and annotations; node set below
        unit = placement.unit if placement is not None else None
        placed = pod.with_status(node_name=node, unit=unit, phase=Phase.STARTING)
        if not self.cache.assumed(placed):
            self.cache.assume(placed)


def _review(review: Obj, response: Obj) -> Obj:
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }


def _describe(result: FilterResult) -> str:
    decision = result.decision
    if isinstance(decision, Placement):
        return f"policy {decision.policy} unit {decision.unit}, best {decision.node}"
    return f"unschedulable ({decision.retry.value}): " + "; ".join(decision.messages())


MUTATE_PATH = "/mutate-pods"
"""The admission webhook (kube-apiserver calls it; it only fills in pod defaults, so it
needs no client certificate)."""

_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class ExtenderMetrics:
    """The extender's Prometheus metrics (its own registry: one per app)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.latency = Histogram(
            "tierserve_extender_request_duration_seconds",
            "Time to answer kube-scheduler (filter, prioritize, bind) and admission (admit).",
            ["verb"],
            buckets=_BUCKETS_S,
            registry=self.registry,
        )
        self.decisions = Counter(
            "tierserve_extender_decisions_total",
            "Filter outcomes: placed (by unit), waiting (retry later) or never possible, "
            "by the first reason; pods no policy selects pass through.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.binds = Counter(
            "tierserve_extender_binds_total",
            "Binds by result: bound, refused (wrong scheduler, node not allowed), failed.",
            ["result"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tierserve_extender_errors_total",
            "Requests answered with an error (bad request body, API failures), by verb.",
            ["verb"],
            registry=self.registry,
        )
        self.unauthorized = Counter(
            "tierserve_extender_unauthorized_total",
            "Verb calls refused for lacking an accepted client certificate.",
            registry=self.registry,
        )


def decision_labels(result: FilterResult | None) -> tuple[str, str]:
    """(outcome, reason) of one filter, for ``tierserve_extender_decisions_total``."""
    if result is None:
        return "passthrough", ""
    decision = result.decision
    if isinstance(decision, Placement):
        return "placed", decision.unit_id or ""
    first = (*decision.reasons, *decision.units)
    reason = type(first[-1]).__name__ if first else ""
    return ("never" if decision.retry is Retry.NEVER else "waiting"), reason


def app(extender: Extender, clients: tuple[str, ...] | None = None) -> web.Application:
    """The aiohttp application: POST /filter, /prioritize, /bind; GET /healthz, /readyz,
    /metrics.

    ``clients``: None accepts any caller; otherwise the verbs need a verified client
    certificate (the server's TLS context checks it against the client CA) whose common
    name is listed (``"*"``: any name).
    """
    metrics = extender.metrics

    @web.middleware
    async def authenticate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        verb = request.method == "POST" and request.path != MUTATE_PATH
        if verb and extender.leading is not None and not extender.leading.is_set():
            return web.json_response(
                {"Error": "tierserve extender: a standby replica (not the leader); retry"},
                status=503,
            )
        if clients is not None and verb:
            name = client_name(request)
            if name is None or ("*" not in clients and name not in clients):
                metrics.unauthorized.inc()
                who = "no client certificate" if name is None else f"client {name!r}"
                log.warning("refused %s %s from %s", request.method, request.path, who)
                return web.json_response(
                    {"Error": f"tierserve extender: {who} may not call {request.path}"},
                    status=403,
                )
        return await handler(request)

    async def _json(request: web.Request) -> Any:
        return await request.json()

    async def filter_(request: web.Request) -> web.Response:
        with metrics.latency.labels("filter").time():
            try:
                return web.json_response(extender.filter(await _json(request)))
            except (TierserveError, KeyError, ValueError) as exc:
                log.exception("filter failed")
                metrics.errors.labels("filter").inc()
                return web.json_response({"Error": f"tierserve extender: {exc}"})

    async def prioritize(request: web.Request) -> web.Response:
        with metrics.latency.labels("prioritize").time():
            try:
                return web.json_response(extender.prioritize(await _json(request)))
            except (TierserveError, KeyError, ValueError) as exc:
                log.exception("prioritize failed")
                metrics.errors.labels("prioritize").inc()
                return web.json_response({"Error": f"tierserve extender: {exc}"}, status=400)

    async def bind(request: web.Request) -> web.Response:
        with metrics.latency.labels("bind").time():
            try:
                return web.json_response(await extender.bind(await _json(request)))
            except (KeyError, ValueError, NotFoundError) as exc:
                metrics.errors.labels("bind").inc()
                return web.json_response({"Error": f"tierserve extender: {exc}"})

    async def admit(request: web.Request) -> web.Response:
        with metrics.latency.labels("admit").time():
            try:
                return web.json_response(extender.admit(await _json(request)))
            except (TierserveError, KeyError, ValueError, TypeError) as exc:
                metrics.errors.labels("admit").inc()
                log.warning("admission review failed: %s", exc)
                return web.json_response({"error": f"tierserve webhook: {exc}"}, status=400)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if not extender.cache.synced():
            return web.Response(text="cache not synced yet\n", status=503)
        if extender.leading is not None and not extender.leading.is_set():
            return web.Response(text="standby: another replica leads\n", status=503)
        return web.Response(text="ok")

    async def metrics_(_: web.Request) -> web.Response:
        lines = [
            "# TYPE tierserve_extender_calls_total counter",
            *(
                f'tierserve_extender_calls_total{{verb="{verb}"}} {count}'
                for verb, count in sorted(extender.calls.items())
            ),
            "# TYPE tierserve_extender_cache_nodes gauge",
            f"tierserve_extender_cache_nodes {len(extender.cache.nodes)}",
            "# TYPE tierserve_extender_cache_pods gauge",
            f"tierserve_extender_cache_pods {len(extender.cache.pods)}",
            "# TYPE tierserve_extender_cache_policies gauge",
            f"tierserve_extender_cache_policies {len(extender.cache.policy_map)}",
        ]
        text = "\n".join(lines) + "\n" + generate_latest(metrics.registry).decode()
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    application = web.Application(client_max_size=256 * 2**20, middlewares=[authenticate])
    application.router.add_post("/filter", filter_)
    application.router.add_post("/prioritize", prioritize)
    application.router.add_post("/bind", bind)
    application.router.add_post(MUTATE_PATH, admit)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/metrics", metrics_)
    return application


__all__ = ["BindRefused", "Extender", "ExtenderMetrics", "app", "decision_labels", "filter_reply"]
