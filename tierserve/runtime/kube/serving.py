"""``tierserve serve ... --backend kubernetes``: what arena renders, applied to a cluster.

Render (pure): a KServe ``InferenceService`` (labels ``servingType``/``servingName``;
``serving.kserve.io/autoscalerClass: external`` when a scale metric is custom, i.e. not
cpu/memory) plus an ``autoscaling/v2`` HPA ``<name>-hpa`` on ``<name>-predictor`` with a
``Pods`` metric; or, raw (``--raw``, or KServe's CRD absent), a Deployment and a Service
``<name>-predictor`` plus the same HPA. Pods use the ``tierserve-scheduler`` profile, and
tolerate the virtual-kubelet taint when a ResourcePolicy selecting them has an
``eci``/``acs`` unit (kube-scheduler's own taint filter runs before the extender).

Apply/read: :func:`submit`, :func:`get`, :func:`list_services`, :func:`delete` talk to
the cluster of a kubeconfig context and return data for ``arena_layout``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import yaml

from tierserve.errors import NotFoundError
from tierserve.model.node import VIRTUAL_KUBELET_TAINT
from tierserve.model.probe import ReadinessProbe
from tierserve.model.replica import TIER_LABEL
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.model.resources import CPU, GPU, MEMORY, format_amount, matches
from tierserve.model.service import InferenceService
from tierserve.policy.hpa.target import hpa_spec_for
from tierserve.runtime.kube.apply import apply_all, collection_path, describe, object_path
from tierserve.runtime.kube.cache import installed_groups
from tierserve.runtime.kube.client import KubeClient, KubeConfig, Obj, load_config
from tierserve.runtime.kube.convert import is_virtual, policy_from_k8s, replica_from_pod
from tierserve.runtime.kube.crd import policies_path
from tierserve.runtime.kube.manifests import SCHEDULER_NAME

KSERVE_API = "serving.kserve.io/v1beta1"
BUILTIN_METRICS = frozenset({"cpu", "memory"})
SERVING_TYPE = "kserve"

T = TypeVar("T")


# --- render (pure) -------------------------------------------------------------------------


def needs_virtual_toleration(service: InferenceService, policies: Sequence[ResourcePolicy]) -> bool:
    labels = service.replica_labels()
    return any(
        p.namespace == service.namespace
        and matches(p.spec.selector, labels)
        and any(u.virtual for u in p.spec.units)
        for p in policies
    )


def _resources(service: InferenceService) -> Obj:
    wanted = service.requests()
    limits = {name: format_amount(name, milli) for name, milli in wanted.items()}
    requests = {k: v for k, v in limits.items() if k in (CPU, MEMORY)}
    out: Obj = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    if GPU in limits:
        limits[GPU] = str(service.spec.gpus)
    return out


def _pod_spec(service: InferenceService, policies: Sequence[ResourcePolicy], scheduler: str) -> Obj:
    spec = service.spec
    mounts = [{"name": d.name, "mountPath": d.mount_path} for d in spec.data]
    volumes: list[Obj] = [
        {"name": d.name, "persistentVolumeClaim": {"claimName": d.name}} for d in spec.data
    ]
    for i, d in enumerate(spec.data_dir):
        mounts.append({"name": f"data-dir-{i}", "mountPath": d.mount_path})
        volumes.append({"name": f"data-dir-{i}", "hostPath": {"path": d.host_path}})
    container: Obj = {
        "name": "kserve-container",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": [spec.shell, "-c", spec.command],
        "ports": [{"containerPort": spec.port, "protocol": "TCP"}],
        "resources": _resources(service),
    }
    if spec.env:
        container["env"] = [{"name": k, "value": v} for k, v in spec.env.items()]
    # Ready when the engine answers its health path (the user's, else the engine's);
    # a startup probe on the same path gives the model load its budget before the
    # readiness probe's failures count.
    probe = spec.readiness_probe if spec.readiness_probe is not None else ReadinessProbe()
    container["readinessProbe"] = _readiness_probe(service, probe)
    container["startupProbe"] = _startup_probe(service)
    if mounts:
        container["volumeMounts"] = mounts
    pod: Obj = {"schedulerName": scheduler, "containers": [container]}
    tolerations = [t.to_dict() for t in spec.tolerations]
    if needs_virtual_toleration(service, policies):
        tolerations.append(
            {"key": VIRTUAL_KUBELET_TAINT.key, "operator": "Exists", "effect": "NoSchedule"}
        )
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if volumes:
        pod["volumes"] = volumes
    return pod


def _readiness_probe(service: InferenceService, probe: ReadinessProbe) -> Obj:
    """Kubernetes probes one path: the user's, else the engine's first default."""
    path = service.readiness_paths()[0]
    out: Obj = {"httpGet": {"path": path, "port": service.spec.port}}
    timings = {
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }
    out.update({k: v for k, v in timings.items() if v is not None})
    return out


STARTUP_BUDGET_S = 1800
"""How long an engine may take to load its model before Kubernetes restarts it (large
models from a network volume take minutes)."""
STARTUP_PERIOD_S = 5


def _startup_probe(service: InferenceService) -> Obj:
    return {
        "httpGet": {"path": service.readiness_paths()[0], "port": service.spec.port},
        "periodSeconds": STARTUP_PERIOD_S,
        "failureThreshold": STARTUP_BUDGET_S // STARTUP_PERIOD_S,
    }


def _labels(service: InferenceService) -> dict[str, str]:
    return {**service.spec.labels, "servingType": SERVING_TYPE, "servingName": service.name}


def _bounds(service: InferenceService) -> tuple[int, int]:
    """The predictor's (min, max): the HPA's (``policy.hpa.target``, the same as the
    local runtime's), else ``spec.replicas`` fixed."""
    scaler = hpa_spec_for(service)
    if scaler is not None:
        return scaler.min_replicas, scaler.max_replicas
    fixed = max(service.spec.replicas, 1)
    return fixed, fixed


def custom_metric(service: InferenceService) -> bool:
    return any(m.name not in BUILTIN_METRICS for m in service.scale_metrics())


AUTOSCALER_ANNOTATION = "autoscaling.tierserve.io/autoscaler"
"""``tierserve``: tierserve's autoscaler (``tierserve kube autoscaler``) sizes the service,
not a HorizontalPodAutoscaler."""
SERVICE_ANNOTATION = "autoscaling.tierserve.io/service"
"""The tierserve InferenceService (JSON) that tierserve's autoscaler evaluates."""
TIERSERVE = "tierserve"


def autoscaled_by_tierserve(service: InferenceService) -> bool:
    return service.spec.annotations.get(AUTOSCALER_ANNOTATION) == TIERSERVE


def service_annotation(service: InferenceService) -> str:
    """The service as tierserve's autoscaler reads it back (name, namespace and spec)."""
    doc = service.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc.pop("status", None)
    meta = doc.get("metadata") or {}
    doc["metadata"] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def hpa(service: InferenceService) -> Obj | None:
    """arena's HPA ``<name>-hpa`` on ``<name>-predictor``; None when the service does not
    autoscale (no scale metric or no ``maxReplicas``: ``policy.hpa.target``) or tierserve's
    autoscaler sizes it."""
    scaler = hpa_spec_for(service)
    if scaler is None or autoscaled_by_tierserve(service):
        return None
    metrics = service.scale_metrics()
    low, high = scaler.min_replicas, scaler.max_replicas
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": f"{service.name}-hpa",
            "namespace": service.namespace,
            "labels": _labels(service),
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": service.predictor,
            },
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": m.name},
                        "target": {"type": "AverageValue", "averageValue": f"{m.target:g}"},
                    },
                }
                for m in metrics
            ],
        },
    }


def render(
    service: InferenceService,
    raw: bool = False,
    policies: Sequence[ResourcePolicy] = (),
    scheduler: str = SCHEDULER_NAME,
) -> list[Obj]:
    """The objects for ``service``: KServe InferenceService (+ HPA), or raw Deployment +
    Service (+ HPA)."""
    labels = _labels(service)
    pod = _pod_spec(service, policies, scheduler)
    objects: list[Obj] = []
    if raw:
        pod_labels = {**service.replica_labels(), **labels}
        selector = {"app": pod_labels["app"]}
        template_meta: Obj = {"labels": pod_labels}
        if service.spec.annotations:
            template_meta["annotations"] = dict(service.spec.annotations)
        deployment_meta: Obj = {
            "name": service.predictor,
            "namespace": service.namespace,
            "labels": labels,
        }
        if autoscaled_by_tierserve(service):
            deployment_meta["annotations"] = {
                AUTOSCALER_ANNOTATION: TIERSERVE,
                SERVICE_ANNOTATION: service_annotation(service),
            }
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": deployment_meta,
                "spec": {
                    "replicas": service.spec.replicas,
                    "selector": {"matchLabels": selector},
                    "template": {"metadata": template_meta, "spec": pod},
                },
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": service.predictor,
                    "namespace": service.namespace,
                    "labels": labels,
                },
                "spec": {
                    "selector": selector,
                    "ports": [{"name": "http", "port": 80, "targetPort": service.spec.port}],
                },
            }
        )
    else:
        # raw Deployments: on a Serverless (Knative) install there is no
        # Deployment <name>-predictor for an HPA (or tierserve's autoscaler) to scale
        annotations = {"serving.kserve.io/deploymentMode": "RawDeployment"}
        annotations.update(service.spec.annotations)
        if custom_metric(service) or autoscaled_by_tierserve(service):
            annotations["serving.kserve.io/autoscalerClass"] = "external"
        if autoscaled_by_tierserve(service):
            annotations[SERVICE_ANNOTATION] = service_annotation(service)
        low, high = _bounds(service)
        meta: Obj = {"name": service.name, "namespace": service.namespace, "labels": labels}
        if annotations:
            meta["annotations"] = annotations
        objects.append(
            {
                "apiVersion": KSERVE_API,
                "kind": "InferenceService",
                "metadata": meta,
                "spec": {"predictor": {"minReplicas": low, "maxReplicas": high, **pod}},
            }
        )
    scaler = hpa(service)
    if scaler is not None:
        objects.append(scaler)
    return objects


def dump(objects: list[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


# --- apply and read -------------------------------------------------------------------------


async def _kserve_installed(kube: KubeClient) -> bool:
    try:
        await kube.get(f"/apis/{KSERVE_API}")
    except NotFoundError:
        return False
    return True


async def kserve_installed(kube: KubeClient) -> bool:
    """Whether the cluster serves KServe's ``InferenceService`` (else jobs render raw)."""
    return await _kserve_installed(kube)


def job_not_found(name: str, namespace: str) -> NotFoundError:
    """What ``serve get|update|logs --backend kubernetes`` say of a job that is not there."""
    return NotFoundError(f"the serving job {name} was not found in namespace {namespace}")


async def cluster_policies(kube: KubeClient, namespace: str) -> list[ResourcePolicy]:
    found = []
    for group in await installed_groups(kube):
        listed = await kube.get(policies_path(group, namespace))
        for obj in listed.get("items") or []:
            try:
                found.append(policy_from_k8s(obj))
            except ValueError:
                continue
    return found


@dataclass(frozen=True)
class Submitted:
    objects: list[Obj]
    raw: bool
    lines: list[str]


async def submit_async(
    service: InferenceService,
    kube: KubeClient,
    dry_run: bool = False,
    raw: bool = False,
    server_dry_run: bool = False,
) -> Submitted:
    raw = raw or not await _kserve_installed(kube)
    objects = render(service, raw, await cluster_policies(kube, service.namespace))
    if dry_run and not server_dry_run:
        return Submitted(objects, raw, [dump(objects)])
    await apply_all(kube, objects, dry_run=dry_run or server_dry_run)
    suffix = " (server dry run)" if dry_run or server_dry_run else ""
    return Submitted(objects, raw, [f"{describe(o)} created{suffix}" for o in objects])


def submit(
    service: InferenceService,
    kubeconfig: str | None = None,
    context: str | None = None,
    dry_run: bool = False,
    raw: bool = False,
) -> list[str]:
    """What ``serve kserve --backend kubernetes`` prints. ``dry_run`` renders without
    applying (no cluster needed: KServe and policies are looked up only if reachable)."""

    async def submitted(kube: KubeClient) -> Submitted:
        return await submit_async(service, kube, dry_run, raw)

    if dry_run:
        try:
            config = load_config(kubeconfig, context)
        except Exception:
            return [dump(render(service, raw))]
        return _run_with(config, submitted).lines
    return run(submitted, kubeconfig, context).lines


def _service_view(obj: Obj, gpus: int, replicas: int) -> Obj:
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    return {
        "metadata": {
            "name": labels.get("servingName", meta["name"]),
            "namespace": meta.get("namespace", "default"),
            "uid": meta.get("uid", ""),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": replicas, "gpus": gpus},
    }


def _gpus(pod_spec: Obj) -> int:
    for c in pod_spec.get("containers") or []:
        limit = ((c.get("resources") or {}).get("limits") or {}).get(GPU)
        if limit is not None:
            return int(str(limit))
    return 0


async def read_services(kube: KubeClient, namespace: str | None) -> tuple[list[Obj], list[Obj]]:
    """(services, pods) in ``arena_layout``'s shapes (``namespace`` None: all)."""
    selector = {"labelSelector": f"servingType={SERVING_TYPE}"}
    services: list[Obj] = []
    if await _kserve_installed(kube):
        path = collection_path(KSERVE_API, "InferenceService", namespace)
        for obj in (await kube.get(path, selector)).get("items") or []:
            predictor = obj.get("spec", {}).get("predictor", {})
            replicas = int(predictor.get("minReplicas", 1))
            services.append(_service_view(obj, _gpus(predictor), replicas))
    path = collection_path("apps/v1", "Deployment", namespace)
    for obj in (await kube.get(path, selector)).get("items") or []:
        if obj["metadata"].get("ownerReferences"):
            continue  # made by KServe for an InferenceService listed above
        spec = obj.get("spec", {})
        pod_spec = spec.get("template", {}).get("spec", {})
        services.append(_service_view(obj, _gpus(pod_spec), int(spec.get("replicas", 1))))
    nodes = (await kube.get("/api/v1/nodes")).get("items") or []
    virtual = {n["metadata"]["name"] for n in nodes if is_virtual(n)}
    pods = []
    listed = await kube.get(collection_path("v1", "Pod", namespace), selector)
    for obj in listed.get("items") or []:
        replica = replica_from_pod(obj)
        view = replica.to_dict()
        node = replica.status.node_name
        if node:
            view["metadata"].setdefault("labels", {})[TIER_LABEL] = (
                "cloud" if node in virtual else "idc"
            )
        pods.append(view)
    services.sort(key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"]))
    return services, pods


async def delete_service(kube: KubeClient, name: str, namespace: str) -> list[str]:
    """Delete what ``submit`` created for ``name``; raises NotFoundError when nothing was."""
    deleted = []
    candidates = [
        (KSERVE_API, "InferenceService", name),
        ("apps/v1", "Deployment", f"{name}-predictor"),
        ("v1", "Service", f"{name}-predictor"),
        ("autoscaling/v2", "HorizontalPodAutoscaler", f"{name}-hpa"),
    ]
    for api, kind, obj_name in candidates:
        ref = {"apiVersion": api, "kind": kind, "metadata": {"name": obj_name}}
        try:
            await kube.delete(object_path(ref, namespace), {"propagationPolicy": "Background"})
        except NotFoundError:
            continue
        deleted.append(describe(ref))
    if not deleted:
        raise NotFoundError(f"serving job {name!r} not found in namespace {namespace!r}")
    return deleted


# --- sync entry points for ``tierserve serve ... --backend kubernetes`` ------------------------


def _run_with(config: KubeConfig, coro_factory: Callable[[KubeClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with KubeClient(config) as kube:
            return await coro_factory(kube)

    return asyncio.run(main())


def run(
    coro_factory: Callable[[KubeClient], Awaitable[T]], kubeconfig: str | None, context: str | None
) -> T:
    """Run ``coro_factory(kube)`` against the kubeconfig's cluster (for the CLI)."""
    return _run_with(load_config(kubeconfig, context), coro_factory)


def services_and_pods(
    namespace: str | None, kubeconfig: str | None = None, context: str | None = None
) -> tuple[list[Obj], list[Obj]]:
    """(services, pods) for ``arena_layout.format_get/format_list`` (namespace None: all)."""

    async def read(kube: KubeClient) -> tuple[list[Obj], list[Obj]]:
        return await read_services(kube, namespace)

    return run(read, kubeconfig, context)


def delete(
    names: Sequence[str], namespace: str, kubeconfig: str | None = None, context: str | None = None
) -> dict[str, list[str] | None]:
    """Delete serving jobs; per name what was deleted, or None when it did not exist."""

    async def remove(kube: KubeClient) -> dict[str, list[str] | None]:
        out: dict[str, list[str] | None] = {}
        for name in names:
            try:
                out[name] = await delete_service(kube, name, namespace)
            except NotFoundError:
                out[name] = None
        return out

    return run(remove, kubeconfig, context)


__all__ = [
    "AUTOSCALER_ANNOTATION",
    "SERVICE_ANNOTATION",
    "autoscaled_by_tierserve",
    "custom_metric",
    "delete",
    "delete_service",
    "dump",
    "hpa",
    "job_not_found",
    "kserve_installed",
    "needs_virtual_toleration",
    "read_services",
    "render",
    "run",
    "service_annotation",
    "services_and_pods",
    "submit",
    "submit_async",
]
