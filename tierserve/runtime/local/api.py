"""The local control plane's HTTP API (JSON; the CLI talks only to it).

Every route but ``/healthz`` needs ``Authorization: Bearer <token>``. Errors are
``{"error": {"message": ..., "reason": ...}}`` with 400 (bad input, nothing changed),
401, 404 or 409.

    GET    /healthz
    GET    /api/v1/{resource}[?namespace=NS]            list (Secrets redacted)
    GET    /api/v1/{resource}/{name}[?namespace=NS]     one object
    DELETE /api/v1/{resource}/{name}[?namespace=NS]
    POST   /api/v1/apply    {"documents": YAML, "source": name, "dryRun": bool}
    POST   /api/v1/delete   {"documents": YAML, "source": name}
    GET    /api/v1/events[?resource=&name=&namespace=]
    GET    /api/v1/cost
    GET    /api/v1/logs/{namespace}/{name}[?tail=N]     a replica's log
    GET    /api/v1/routes                               the gateway's routes (docs/gateway.md)
    POST   /api/v1/shutdown {"stopReplicas": bool}
    GET    /metrics                                     Prometheus text
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tierserve.errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    TierserveError,
    ValidationError,
)
from tierserve.model import InferenceService, Phase, Replica, TypedObject, load_documents
from tierserve.model.names import PLURALS, resolve_resource
from tierserve.runtime.clock import Clock
from tierserve.runtime.local.command import replica_dirs
from tierserve.runtime.local.controllers import CLOUD_COST, GPU_SECONDS
from tierserve.runtime.local.store import Event, Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY_BYTES = 8 * 2**20


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "reason": reason}}, status=status)


def _event_dict(e: Event) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "namespace": e.namespace,
        "name": e.name,
        "type": e.type,
        "reason": e.reason,
        "message": e.message,
        "count": e.count,
        "firstTimestamp": e.first_s,
        "lastTimestamp": e.last_s,
    }


def _spec_of(obj: TypedObject) -> dict[str, Any]:
    """What ``apply`` compares: everything but status and server-set metadata."""
    data = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        data["metadata"].pop(key, None)
    return data


def _sum_by_service(
    counters: dict[tuple[tuple[str, str], ...], float], tier: str | None = None
) -> dict[tuple[str, str], float]:
    """Counter values summed per (namespace, service); only those of ``tier`` when given."""
    sums: dict[tuple[str, str], float] = {}
    for labels, value in counters.items():
        d = dict(labels)
        if tier is None or d["tier"] == tier:
            key = (d["namespace"], d["service"])
            sums[key] = sums.get(key, 0.0) + value
    return sums


class _CostCollector(Collector):
    def __init__(
        self, store: Store, replicas: Callable[[], list[Replica]], tiers: Callable[[Replica], str]
    ) -> None:
        self.store, self.replicas, self.tiers = store, replicas, tiers

    def collect(self) -> Any:
        gpu = CounterMetricFamily(
            "tierserve_gpu_seconds",
            "GPU-seconds used by replicas",
            labels=["namespace", "service", "tier", "node"],
        )
        cloud = CounterMetricFamily(
            "tierserve_cloud_gpu_seconds",
            "GPU-seconds billed on virtual (cloud) nodes",
            labels=["namespace", "service"],
        )
        cost = CounterMetricFamily(
            "tierserve_cloud_cost", "Cost of cloud GPU-seconds", labels=["namespace", "service"]
        )
        gpu_seconds = self.store.counters(GPU_SECONDS)
        for labels, value in gpu_seconds.items():
            d = dict(labels)
            gpu.add_metric([d["namespace"], d["service"], d["tier"], d["node"]], value)
        for key, value in _sum_by_service(gpu_seconds, tier="cloud").items():
            cloud.add_metric(list(key), value)
        for key, value in _sum_by_service(self.store.counters(CLOUD_COST)).items():
            cost.add_metric(list(key), value)
        replicas = GaugeMetricFamily(
            "tierserve_replicas",
            "Replicas by phase",
            labels=["namespace", "service", "node", "tier", "phase"],
        )
        counts: dict[tuple[str, str, str, str, str], int] = {}
        for r in self.replicas():
            key5 = (r.namespace, r.spec.service, r.node_name or "", self.tiers(r), r.phase.value)
            counts[key5] = counts.get(key5, 0) + 1
        for key5, n in counts.items():
            replicas.add_metric(list(key5), n)
        return [gpu, cloud, cost, replicas]


def cost_summary(store: Store) -> dict[str, Any]:
    """GPU-seconds per service and tier, and the cloud cost per service."""
    services: dict[str, dict[str, Any]] = {}
    for labels, value in store.counters(GPU_SECONDS).items():
        d = dict(labels)
        entry = services.setdefault(
            f"{d['namespace']}/{d['service']}", {"gpuSeconds": {}, "cloudCost": 0.0}
        )
        entry["gpuSeconds"][d["tier"]] = entry["gpuSeconds"].get(d["tier"], 0.0) + value
    for labels, value in store.counters(CLOUD_COST).items():
        d = dict(labels)
        entry = services.setdefault(
            f"{d['namespace']}/{d['service']}", {"gpuSeconds": {}, "cloudCost": 0.0}
        )
        entry["cloudCost"] += value
    return {"services": services}


class ApiServer:
    """Builds the aiohttp application; ``on_shutdown`` is how ``tierserve down`` stops us."""

    def __init__(
        self,
        store: Store,
        token: str,
        state_dir: str,
        on_shutdown: Callable[[bool], None],
        tier_of: Callable[[Replica], str],
        clock: Clock,
        routes: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.clock = clock
        self.routes = routes
        self.store = store
        self.token = token
        self.state_dir = state_dir
        self.on_shutdown = on_shutdown
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CostCollector(store, lambda: store.list(Replica), tier_of))

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._auth, self._errors], client_max_size=MAX_BODY_BYTES
        )
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/api/v1/apply", self._apply)
        app.router.add_post("/api/v1/delete", self._delete_docs)
        app.router.add_get("/api/v1/events", self._events)
        app.router.add_get("/api/v1/cost", self._cost)
        app.router.add_get("/api/v1/logs/{namespace}/{name}", self._logs)
        app.router.add_post("/api/v1/shutdown", self._shutdown)
        app.router.add_get("/api/v1/routes", self._routes)
        app.router.add_get("/api/v1/{resource}", self._list)
        app.router.add_get("/api/v1/{resource}/{name}", self._get)
        app.router.add_delete("/api/v1/{resource}/{name}", self._delete)
        return app

    # -- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self.token):
            return _error(
                401,
                "Unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                "with the token from the state directory's 'token' file",
            )
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValidationError as exc:
            return _error(400, "Invalid", str(exc))
        except NotFoundError as exc:
            return _error(404, "NotFound", str(exc))
        except ConflictError as exc:
            return _error(409, "Conflict", str(exc))
        except TierserveError as exc:
            return _error(400, "BadRequest", str(exc))

    # -- helpers -----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise ValidationError("request", [FieldError("body", "expected a JSON object")])
        return data

    def _find(self, request: web.Request) -> TypedObject:
        cls = resolve_resource(request.match_info["resource"])
        namespace = request.query.get("namespace", "default")
        name = request.match_info["name"]
        obj = self.store.get(cls, namespace, name)
        if obj is None:
            where = f" in namespace {namespace}" if cls.NAMESPACED else ""
            raise NotFoundError(f'{PLURALS[cls]} "{name}" not found{where}')
        return obj

    # -- handlers ----------------------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), content_type="text/plain", charset="utf-8"
        )

    async def _list(self, request: web.Request) -> web.Response:
        cls = resolve_resource(request.match_info["resource"])
        namespace = (
            None
            if request.query.get("allNamespaces")
            else request.query.get("namespace", "default")
        )
        items = [o.to_dict() for o in self.store.list(cls, namespace)]
        return web.json_response({"kind": f"{cls.KIND}List", "items": items})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._find(request).to_dict())

    async def _delete(self, request: web.Request) -> web.Response:
        obj = self._find(request)
        if isinstance(obj, Replica):
            # Like `kubectl delete pod`: the replica terminates and its service replaces it.
            if not obj.terminating:
                self.store.put(
                    obj.with_status(
                        phase=Phase.TERMINATING,
                        terminating_s=self.clock.now(),
                        reason="Deleted",
                        message="",
                    )
                )
        else:
            self.store.delete(obj)
        return web.json_response({"results": [self._result(obj, "deleted")]})

    @staticmethod
    def _result(obj: TypedObject, action: str) -> dict[str, str]:
        return {
            "kind": obj.KIND,
            "apiVersion": obj.api_version,
            "namespace": obj.namespace,
            "name": obj.name,
            "action": action,
        }

    def _documents(self, body: dict[str, Any]) -> list[TypedObject]:
        text = body.get("documents")
        source = str(body.get("source") or "<input>")
        if not isinstance(text, str):
            raise ValidationError("request", [FieldError("documents", "expected YAML text")])
        objs = load_documents(text, source)
        managed = [
            FieldError(
                f"Replica {o.name}",
                "replicas are created by their InferenceService; "
                "apply the service (or change its replicas) instead",
            )
            for o in objs
            if isinstance(o, Replica)
        ]
        if managed:
            raise ValidationError(source, managed)
        return objs

    async def _apply(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        objs = self._documents(body)
        results, writes = [], []
        for obj in objs:
            current = self.store.get(type(obj), obj.namespace, obj.name)
            if current is None:
                action = "created"
            elif _spec_of(current) == _spec_of(obj):
                action = "unchanged"
            else:
                action = "configured"
            if action != "unchanged":
                if isinstance(obj, InferenceService) and isinstance(current, InferenceService):
                    obj = obj.model_copy(update={"status": current.status})
                writes.append(obj)
            results.append(self._result(obj, action))
        if not body.get("dryRun"):
            self.store.put_all(writes)
        return web.json_response({"results": results})

    async def _delete_docs(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        results = []
        for obj in self._documents(body):
            current = self.store.get(type(obj), obj.namespace, obj.name)
            if current is None:
                results.append(self._result(obj, "not found"))
                continue
            self.store.delete(current)
            results.append(self._result(obj, "deleted"))
        return web.json_response({"results": results})

    async def _events(self, request: web.Request) -> web.Response:
        events = self.store.events()
        q = request.query
        if "resource" in q:
            kind = resolve_resource(q["resource"]).KIND
            events = [e for e in events if e.kind == kind]
        if "name" in q:
            events = [e for e in events if e.name == q["name"]]
        if "namespace" in q:
            events = [e for e in events if e.namespace in (q["namespace"], "")]
        return web.json_response({"items": [_event_dict(e) for e in events]})

    async def _cost(self, _: web.Request) -> web.Response:
        return web.json_response(cost_summary(self.store))

    async def _logs(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        _, path = replica_dirs(self.state_dir, namespace, name)
        if not os.path.exists(path):
            raise NotFoundError(f'no log for replica "{namespace}/{name}"')
        tail = request.query.get("tail")
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        if tail is not None and tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = lines[-int(tail) :] if int(tail) else []
        return web.Response(text="".join(lines))

    async def _routes(self, _: web.Request) -> web.Response:
        """The gateway's routes document (for ``tierserve gateway --routes-url``)."""
        return web.json_response(self.routes() if self.routes else {"services": []})

    async def _shutdown(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.on_shutdown(bool(body.get("stopReplicas", True)))
        return web.json_response({"stopping": True})
