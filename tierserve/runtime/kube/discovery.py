"""The gateway's routes on Kubernetes: every pod of every service, from a watch.

``tierserve gateway --discovery kubernetes`` feeds its route table from
:class:`KubeRouteSource`: a list-then-watch of the pods tierserve renders (label
``servingName``; a KServe InferenceService's pods carry
``serving.kserve.io/inferenceservice``) and of the nodes (for each pod's tier). The same
rules as the local runtime's routes (the Deployments, watched too, keep a service's route
while it has no pod):

* a Running pod whose ``Ready`` condition is True takes new requests, at
  ``http://<podIP>:<containerPort>``;
* a pod being deleted (``deletionTimestamp``) is listed not ready: it gets no new
  requests and finishes the ones it has (drain), until it is gone;
* its tier is its node's: a virtual-kubelet node is the cloud, which the balancer uses
  only once the IDC replicas are busier (IDC first);
* one route per service, host ``<name>-<namespace>.example.com`` (as KServe's ingress),
  model name the command's ``--served-model-name`` (else the model path), as locally.

A service with no Ready pod keeps its route with no ready backend, so the gateway holds
its requests until one is Ready (scale from zero, a cold start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from tierserve.errors import TierserveError
from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.model.service import InferenceService
from tierserve.runtime.kube.client import KubeClient, KubeConfig, Obj, list_then_watch
from tierserve.runtime.kube.convert import is_virtual

log = logging.getLogger(__name__)

SERVICE_LABELS = ("servingName", "serving.kserve.io/inferenceservice")


def _service_of(pod: Obj) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for key in SERVICE_LABELS:
        if labels.get(key):
            return str(labels[key])
    return None


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _port(container: Obj) -> int:
    for port in container.get("ports") or []:
        if port.get("containerPort"):
            return int(port["containerPort"])
    return 8080


def _model_name(service: str, container: Obj) -> str:
    """The model name clients send: as the local runtime reads it from the command."""
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    command = words[2] if len(words) == 3 and words[1] == "-c" else " ".join(words)
    try:
        return str(InferenceService.new(service, spec={"command": command}).served_model_name())
    except (ValueError, TierserveError):
        return service


def pod_routes(
    pods: Iterable[Obj], nodes: Mapping[str, Obj], deployments: Iterable[Obj] = ()
) -> list[ServiceRoute]:
    """One route per service among ``deployments`` and ``pods`` (pure). A service's
    Deployment keeps its route when it has no pod (scaled to zero, all starting), so the
    gateway holds its requests instead of answering 404."""
    backends: dict[tuple[str, str], list[Backend]] = {}
    models: dict[tuple[str, str], str] = {}
    for deployment in deployments:
        service = _service_of(deployment)
        if service is None:
            continue
        meta = deployment["metadata"]
        template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        container = (template.get("containers") or [{}])[0]
        models[(str(meta.get("namespace", "default")), service)] = _model_name(service, container)
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        service = _service_of(pod)
        if service is None:
            continue
        meta, spec = pod["metadata"], pod.get("spec") or {}
        key = (str(meta.get("namespace", "default")), service)
        container = (spec.get("containers") or [{}])[0]
        models.setdefault(key, _model_name(service, container))
        ip = (pod.get("status") or {}).get("podIP")
        terminating = bool(meta.get("deletionTimestamp"))
        if not ip or not (_ready(pod) or terminating):
            continue
        node = nodes.get(spec.get("nodeName") or "")
        cloud = node is not None and is_virtual(node)
        backends.setdefault(key, []).append(
            Backend(
                replica=str(meta["name"]),
                url=f"http://{ip}:{_port(container)}",
                unit=1 if cloud else 0,
                tier="cloud" if cloud else "idc",
                ready=_ready(pod) and not terminating,
            )
        )
    return [
        ServiceRoute(
            namespace=namespace,
            name=name,
            model_names=(models[(namespace, name)],),
            backends=tuple(backends.get((namespace, name), ())),
        )
        for namespace, name in sorted(models)
    ]


class KubeRouteSource:
    """A :class:`~tierserve.gateway.sources.RouteSource` over a watch of pods and nodes."""

    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        self.pods: dict[tuple[str, str], Obj] = {}
        self.nodes: dict[str, Obj] = {}
        self.deployments: dict[tuple[str, str], Obj] = {}
        self._kube: KubeClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._synced: dict[str, asyncio.Event] = {}
        self._version = 0
        self._fetched = -1

    async def _start(self) -> None:
        self._kube = KubeClient(self.config)
        watched = (
            ("pods", "/api/v1/pods"),
            ("nodes", "/api/v1/nodes"),
            ("deployments", "/apis/apps/v1/deployments"),
        )
        for name, path in watched:
            self._synced[name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._list_watch(name, path)))
        await asyncio.wait_for(
            asyncio.gather(*(e.wait() for e in self._synced.values())), timeout=30
        )

    def _store(self, name: str) -> dict[Any, Obj]:
        stores: dict[str, dict[Any, Obj]] = {
            "pods": self.pods,
            "nodes": self.nodes,
            "deployments": self.deployments,
        }
        return stores[name]

    def _apply(self, name: str, obj: Obj, deleted: bool) -> None:
        meta = obj["metadata"]
        store = self._store(name)
        key: Any = (
            meta["name"]
            if name == "nodes"
            else (str(meta.get("namespace", "default")), str(meta["name"]))
        )
        if deleted:
            store.pop(key, None)
        elif name == "nodes" or _service_of(obj) is not None:
            store[key] = obj
        self._version += 1

    async def _list_watch(self, name: str, path: str) -> None:
        assert self._kube is not None

        def listed(items: list[Obj]) -> None:
            self._store(name).clear()
            for obj in items:
                self._apply(name, obj, False)
            self._synced[name].set()

        await list_then_watch(
            self._kube, path, listed, lambda obj, deleted: self._apply(name, obj, deleted)
        )

    async def fetch(self) -> list[ServiceRoute] | None:
        if self._kube is None:
            await self._start()
        if self._version == self._fetched:
            return None
        self._fetched = self._version
        return pod_routes(self.pods.values(), self.nodes, self.deployments.values())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._kube is not None:
            await self._kube.close()


def route_source(config: KubeConfig) -> KubeRouteSource:
    """A module-level factory (picklable with its config, for ``--workers``)."""
    return KubeRouteSource(config)


__all__ = ["KubeRouteSource", "pod_routes", "route_source"]
