"""``tierserve kube metrics``: the custom metrics API (``custom.metrics.k8s.io/v1beta2``)
as an aggregated API server, so the stock HPA scales on a pod's GPU and vLLM metrics with
no Prometheus and no adapter.

The kube-apiserver proxies ``/apis/custom.metrics.k8s.io/v1beta2/...`` here (an
APIService). Each request for ``namespaces/<ns>/pods/<name|*>/<metric>?labelSelector=...``
lists the selected pods, scrapes each Running pod's ``/metrics`` at
``http://<podIP>:<port>/metrics`` (port: the ``prometheus.io/port`` annotation, else the
first container port, else ``--pod-port``; path: ``prometheus.io/path``, else
``/metrics``), and answers a ``MetricValueList`` of their values: one number per pod, the sum of the
metric's series as the local runtime reads it (``runtime.promtext``), or of the series a
``metricLabelSelector`` selects (``policy.metricsapi``).
A pod that does not answer or lacks the metric is left out (the HPA counts it missing).

Who may ask (``frontproxy``): only kube-apiserver's front proxy (its client certificate,
signed by the requestheader client CA, of an allowed name) and, for metric values, only
a user a SubjectAccessReview allows to ``get`` ``custom.metrics.k8s.io`` ``pods/<metric>``
in the namespace. ``/healthz`` and ``/readyz`` are open to probes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tierserve.errors import NotFoundError, TierserveError, ValidationError
from tierserve.policy import metricsapi
from tierserve.policy.metricsapi import PodValue, Sample, Selector
from tierserve.runtime.kube.client import KubeApiError, KubeClient, KubeConfig, Obj
from tierserve.runtime.kube.frontproxy import (
    USER_KEY,
    Access,
    Authorizer,
    FrontProxyTLS,
    Refusal,
    SubjectAccessReviews,
    front_proxy_from,
    front_proxy_user,
)
from tierserve.runtime.promtext import parse_metrics

log = logging.getLogger("tierserve.kube.metrics")

API = f"/apis/{metricsapi.GROUP_VERSION}"


class Pods(Protocol):
    """Where the selected pods come from (the API server; a fake in tests)."""

    async def list(self, namespace: str, selector: str) -> list[Obj]: ...

    async def get(self, namespace: str, name: str) -> Obj: ...


class ApiPods:
    """Pods read from the API server on every request (the HPA asks once a sync)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def list(self, namespace: str, selector: str) -> list[Obj]:
        params = {"labelSelector": selector} if selector else None
        listed = await self.kube.get(f"/api/v1/namespaces/{namespace}/pods", params)
        return list(listed.get("items") or [])

    async def get(self, namespace: str, name: str) -> Obj:
        return await self.kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


Fetch = Callable[[str], Awaitable[str | None]]
"""GET a URL's text; None when it does not answer 200."""


def scrape_target(pod: Obj, default_port: int) -> str | None:
    """``http://<podIP>:<port><path>`` of a Running, not deleting pod (see the module
    doc), or None."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or status.get("phase") != "Running" or meta.get("deletionTimestamp"):
        return None
    annotations = meta.get("annotations") or {}
    port: object = annotations.get("prometheus.io/port")
    if port is None:
        ports = [
            p.get("containerPort")
            for c in (pod.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
        ]
        port = next((p for p in ports if p), default_port)
    path = str(annotations.get("prometheus.io/path") or "/metrics")
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    return f"http://{host}:{port}{path if path.startswith('/') else '/' + path}"


def parse_samples(text: str) -> list[Sample]:
    """Every plain sample of a Prometheus text exposition (name, labels, value)."""
    return [
        (s.name, s.labels, float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(metricsapi.status(code, reason, message), status=code)


class MetricsApi:
    """The API's handlers; ``app()`` builds the aiohttp application."""

    def __init__(
        self,
        pods: Pods,
        fetch: Fetch,
        metrics: Sequence[str] = metricsapi.SERVED_METRICS,
        default_port: int = 8080,
        allowed_names: tuple[str, ...] = (),
        front_proxy: bool = True,
        window_s: int = 1,
        authorizer: Authorizer | None = None,
        gateways: Sequence[str] = (),
    ) -> None:
        self.pods = pods
        self.fetch = fetch
        self.gateways = tuple(gateways)
        """The gateways' ``/metrics`` URLs: with any, their per-pod signals are served."""
        extra = tuple(m for m in metricsapi.GATEWAY_METRICS if self.gateways and m not in metrics)
        self.metrics = (*tuple(metrics), *extra)
        self.default_port = default_port
        self.allowed_names = allowed_names
        self.front_proxy = front_proxy
        self.window_s = window_s
        self.authorizer = authorizer

    # --- the front-proxy check (``frontproxy``) ------------------------------------------

    @web.middleware
    async def authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in ("/healthz", "/readyz", "/livez") or not self.front_proxy:
            return await handler(request)
        who = front_proxy_user(request, self.allowed_names)
        if isinstance(who, Refusal):
            log.warning("refused %s: %s", request.path, who.message)
            return _status(who.code, who.reason, who.message)
        request[USER_KEY] = who
        return await handler(request)

    # --- handlers ----------------------------------------------------------------------

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def groups(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "APIGroupList", "apiVersion": "v1", "groups": [metricsapi.api_group()]}
        )

    async def group(self, _: web.Request) -> web.Response:
        return web.json_response(metricsapi.api_group())

    async def resources(self, _: web.Request) -> web.Response:
        return web.json_response(metricsapi.api_resource_list(self.metrics))

    async def openapi_v2(self, _: web.Request) -> web.Response:
        # kube-apiserver aggregates every APIService's OpenAPI; an empty document says
        # "nothing to publish" (a 404 is retried and logged as an error)
        info = {"title": "tierserve custom metrics API", "version": metricsapi.VERSION}
        return web.json_response({"swagger": "2.0", "info": info, "paths": {}})

    async def openapi_v3(self, _: web.Request) -> web.Response:
        return web.json_response({"paths": {}})

    async def other(self, request: web.Request) -> web.Response:
        return _status(
            404, "NotFound",
            f"{request.path}: tierserve's custom metrics API serves pods' metrics only: "
            f"{API}/namespaces/<namespace>/pods/<name or *>/<metric>",
        )  # fmt: skip

    async def pod_metric(self, request: web.Request) -> web.Response:
        ns = request.match_info["namespace"]
        name = request.match_info["name"]
        metric = request.match_info["metric"]
        if metric not in self.metrics:
            return _status(
                404, "NotFound",
                f"metric {metric!r} is not served for pods; served: {', '.join(self.metrics)} "
                "(add others with tierserve kube metrics --metric NAME)",
            )  # fmt: skip
        try:
            pod_selector = metricsapi.parse_selector(
                request.query.get("labelSelector", ""), "labelSelector"
            )
            metric_selector = metricsapi.parse_selector(
                request.query.get("metricLabelSelector", ""), "metricLabelSelector"
            )
        except ValidationError as exc:
            return _status(400, "BadRequest", str(exc))
        user = request.get(USER_KEY)
        if self.authorizer is not None and user is not None:
            access = Access(metricsapi.GROUP, metricsapi.VERSION, ns, "pods", name, metric)
            try:
                allowed, why = await self.authorizer.allowed(user, access)
            except TierserveError as exc:
                return _status(503, "ServiceUnavailable", f"cannot authorize: {exc}")
            if not allowed:
                return _status(
                    403, "Forbidden",
                    f"user {user.name!r} cannot get resource \"pods/{metric}\" in API group "
                    f"{metricsapi.GROUP!r} in the namespace {ns!r}" + (f": {why}" if why else ""),
                )  # fmt: skip
        try:
            if name == "*":
                pods = await self.pods.list(ns, pod_selector.text)
            else:
                pod = await self.pods.get(ns, name)
                labels = (pod.get("metadata") or {}).get("labels") or {}
                pods = [pod] if pod_selector.matches(labels) else []
        except NotFoundError:
            return _status(404, "NotFound", f"pod {ns}/{name} not found")
        except KubeApiError as exc:
            if exc.status == 400:  # e.g. a namespace or pod name the API server refuses
                return _status(400, "BadRequest", f"pods in {ns!r}: {exc}")
            log.warning("cannot list pods in %s: %s", ns, exc)
            return _status(503, "ServiceUnavailable", f"cannot read pods in {ns}: {exc}")
        except TierserveError as exc:
            log.warning("cannot list pods in %s: %s", ns, exc)
            return _status(503, "ServiceUnavailable", f"cannot read pods in {ns}: {exc}")
        values = await self.values(pods, metric, metric_selector)
        log.info(
            "%s/%s %s: %s", ns, pod_selector.text or name, metric,
            ", ".join(f"{v.pod}={v.value:g}" for v in values) or "no values",
        )  # fmt: skip
        return web.json_response(
            metricsapi.metric_value_list(metric, metric_selector, values, self.window_s)
        )

    async def gateway_values(self, pods: list[Obj], metric: str) -> list[PodValue]:
        """A gateway signal per pod, summed over the gateways that answer (none: no
        values, so the HPA counts the pods as missing rather than idle)."""
        texts = await asyncio.gather(*(self.fetch(url) for url in self.gateways))
        expositions = []
        for url, text in zip(self.gateways, texts, strict=True):
            if text is None:
                continue
            try:
                expositions.append(parse_samples(text))
            except ValueError as exc:
                log.warning("bad /metrics from gateway %s: %s", url, exc)
        if not expositions:
            return []
        out = []
        for pod in pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            if status.get("phase") != "Running" or meta.get("deletionTimestamp"):
                continue
            namespace = meta.get("namespace", "")
            value = metricsapi.gateway_value(expositions, metric, namespace, meta["name"])
            out.append(PodValue(namespace, meta["name"], value, _now()))
        return sorted(out, key=lambda v: v.pod)

    async def values(self, pods: list[Obj], metric: str, selector: Selector) -> list[PodValue]:
        if metric in metricsapi.GATEWAY_METRICS and self.gateways:
            return await self.gateway_values(pods, metric)
        targets = [(p, scrape_target(p, self.default_port)) for p in pods]
        live = [(p, url) for p, url in targets if url is not None]
        texts = await asyncio.gather(*(self.fetch(url) for _, url in live))
        out = []
        for (pod, url), text in zip(live, texts, strict=True):
            if text is None:
                continue
            try:
                if selector.requirements:
                    value = metricsapi.pod_value(parse_samples(text), metric, selector)
                else:  # one number per name, exactly as the local runtime reads it
                    value = parse_metrics(text).get(metric)
            except ValueError as exc:
                log.warning("bad /metrics from %s: %s", url, exc)
                continue
            if value is not None:
                meta = pod["metadata"]
                out.append(PodValue(meta.get("namespace", ""), meta["name"], value, _now()))
        return sorted(out, key=lambda v: v.pod)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.authenticate])
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/readyz", self.health)
        app.router.add_get("/livez", self.health)
        app.router.add_get("/openapi/v2", self.openapi_v2)
        app.router.add_get("/openapi/v3", self.openapi_v3)
        app.router.add_get("/apis", self.groups)
        app.router.add_get(f"/apis/{metricsapi.GROUP}", self.group)
        app.router.add_get(API, self.resources)
        app.router.add_get(API + "/namespaces/{namespace}/pods/{name}/{metric}", self.pod_metric)
        app.router.add_get(API + "/{tail:.*}", self.other)
        return app


class HttpFetch:
    """Scrapes over one pooled session with a timeout."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, url: str) -> str | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), trust_env=False
            )
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    return None
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("scrape %s: %s", url, exc)
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def serve_metrics_api(
    config: KubeConfig,
    host: str,
    port: int,
    tls: FrontProxyTLS,
    metrics: Sequence[str] = metricsapi.SERVED_METRICS,
    default_port: int = 8080,
    scrape_timeout_s: float = 2.0,
    gateways: Sequence[str] = (),
) -> None:
    """Serve the custom metrics API until cancelled."""
    fetch = HttpFetch(scrape_timeout_s)
    async with KubeClient(config) as kube:
        tls = await front_proxy_from(kube, tls)
        ssl_context = tls.context()
        api = MetricsApi(
            ApiPods(kube), fetch, metrics, default_port, tls.allowed_names,
            authorizer=SubjectAccessReviews(kube), gateways=gateways,
        )  # fmt: skip
        runner = web.AppRunner(api.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
            log.warning(
                "custom metrics API (%s) on https://%s:%d, %d metrics",
                metricsapi.GROUP_VERSION, host, port, len(api.metrics),
            )  # fmt: skip
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await fetch.close()


__all__ = [
    "API",
    "ApiPods",
    "HttpFetch",
    "MetricsApi",
    "Pods",
    "parse_samples",
    "scrape_target",
    "serve_metrics_api",
]
