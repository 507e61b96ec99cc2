"""``tierserve serve update kserve --backend kubernetes``: change a serving job's objects.

Read what ``serve kserve`` made (the KServe ``InferenceService``, or the raw Deployment +
Service, and the HPA ``<name>-hpa``), read the service back
(:func:`tierserve.runtime.kube.readback.read_back`), apply the flags to it (the caller's
``change``: the same validation as the local control plane's), and render it again
(:func:`tierserve.runtime.kube.serving.render`, as ``serve kserve`` does).

Then, with optimistic concurrency: each object is server-side applied with the
``resourceVersion`` it was read at, first as a dry run. Nothing differs (labels,
annotations, spec): unchanged, nothing written. Otherwise the objects that differ are
applied for real, and an object the new rendering no longer has (an HPA) is deleted
with its ``resourceVersion`` as a precondition. A ``409 Conflict`` (someone else wrote
the object in between: the HPA controller, tierserve's autoscaler) starts over from the
read, up to :data:`ATTEMPTS` times.

A KServe ``InferenceService`` has no replica count: for one that autoscales,
``--replicas`` goes to the ``scale`` of the Deployment KServe made for it (held until its
autoscaler's next decision, as on the local control plane); for one that does not, it is
``minReplicas`` = ``maxReplicas``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tierserve.errors import ConflictError, NotFoundError
from tierserve.model.service import PREDICTOR_SUFFIX, InferenceService
from tierserve.runtime.kube.apply import describe, object_path
from tierserve.runtime.kube.client import MERGE_PATCH, KubeClient, Obj
from tierserve.runtime.kube.readback import Rendered, read_back
from tierserve.runtime.kube.serving import (
    KSERVE_API,
    SERVING_TYPE,
    autoscaled_by_tierserve,
    cluster_policies,
    hpa,
    job_not_found,
    kserve_installed,
    render,
    run,
)

ATTEMPTS = 5
"""Reads and applies before a service that keeps changing under us is given up on."""

Change = Callable[[Obj], InferenceService]
"""A read-back service (as the API returns a tierserve InferenceService) -> the service
with the update's flags applied; raises ``ValidationError``."""


@dataclass(frozen=True)
class Updated:
    """What an update did (or, ``dry_run``, would do): kubectl's ``kind.group/name``."""

    configured: list[str]
    deleted: list[str]
    dry_run: bool = False

    @property
    def unchanged(self) -> bool:
        return not self.configured and not self.deleted


async def _get(kube: KubeClient, api: str, kind: str, name: str, namespace: str) -> Obj | None:
    ref = {"apiVersion": api, "kind": kind, "metadata": {"name": name}}
    try:
        found: Obj = await kube.get(object_path(ref, namespace))
    except NotFoundError:
        return None
    found.setdefault("apiVersion", api)
    found.setdefault("kind", kind)
    return found


def _ours(obj: Obj | None, name: str) -> bool:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return obj is not None and (
        labels.get("servingType") == SERVING_TYPE or labels.get("servingName") == name
    )


async def read_rendered(kube: KubeClient, name: str, namespace: str) -> Rendered | None:
    """The job's objects as ``serve kserve`` made them; None when there is no such job."""
    scaler = await _get(kube, "autoscaling/v2", "HorizontalPodAutoscaler", f"{name}-hpa", namespace)
    scaler = scaler if _ours(scaler, name) else None
    predictor = f"{name}{PREDICTOR_SUFFIX}"
    if await kserve_installed(kube):
        isvc = await _get(kube, KSERVE_API, "InferenceService", name, namespace)
        if _ours(isvc, name):
            assert isvc is not None
            made = await _get(kube, "apps/v1", "Deployment", predictor, namespace)
            owners = ((made or {}).get("metadata") or {}).get("ownerReferences") or []
            kserves = any(o.get("kind") == "InferenceService" for o in owners)
            return Rendered(isvc, raw=False, hpa=scaler, scaled=made if kserves else None)
    deployment = await _get(kube, "apps/v1", "Deployment", predictor, namespace)
    if not _ours(deployment, name) or (deployment or {})["metadata"].get("ownerReferences"):
        return None  # none, or KServe's own for an InferenceService
    assert deployment is not None
    service = await _get(kube, "v1", "Service", predictor, namespace)
    return Rendered(
        deployment, raw=True, hpa=scaler, service=service if _ours(service, name) else None
    )


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _content(obj: Obj) -> Obj:
    """What an update may change: labels, annotations and spec (not status, not the
    resourceVersion or managedFields a write moves)."""
    meta = obj.get("metadata") or {}
    return {
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
        "spec": obj.get("spec"),
    }


def _kserve_scale(
    current: Rendered, service: InferenceService, namespace: str
) -> tuple[str, Obj] | None:
    """KServe's InferenceService has no replica count: a job that autoscales gets
    ``--replicas`` on the Deployment KServe made (its ``scale``, at the read
    ``resourceVersion``), held until its autoscaler's next decision, as on the local
    control plane. (path, merge patch), or None: nothing to scale."""
    now = current.replicas()
    if current.raw or current.scaled is None or now is None or service.spec.replicas == now:
        return None
    if hpa(service) is None and not autoscaled_by_tierserve(service):
        return None  # fixed: minReplicas = maxReplicas says it
    version = current.scaled["metadata"]["resourceVersion"]
    body = {"metadata": {"resourceVersion": version}, "spec": {"replicas": service.spec.replicas}}
    return f"{object_path(current.scaled, namespace)}/scale", body


async def _patch(kube: KubeClient, path: str, body: Obj, dry_run: bool = False) -> None:
    params = {"dryRun": "All"} if dry_run else None
    await kube.request("PATCH", path, body, params, content_type=MERGE_PATCH)


async def _attempt(
    kube: KubeClient, name: str, namespace: str, change: Change, dry_run: bool
) -> Updated:
    current = await read_rendered(kube, name, namespace)
    if current is None:
        raise job_not_found(name, namespace)
    policies = await cluster_policies(kube, namespace)
    service = change(read_back(current, policies))
    wanted = render(service, current.raw, policies)
    live = {_key(o): o for o in current.objects()}
    for obj in wanted:
        known = live.get(_key(obj))
        if known is not None:
            obj["metadata"]["resourceVersion"] = known["metadata"]["resourceVersion"]
    changed = []
    for obj in wanted:
        path = object_path(obj, namespace)
        result = await kube.apply(path, obj, dry_run=True)
        known = live.get(_key(obj))
        if known is None or _content(result) != _content(known):
            changed.append(obj)
    keys = {_key(o) for o in wanted}
    gone = [o for k, o in live.items() if k not in keys]
    scale = _kserve_scale(current, service, namespace)
    scaled = [current.scaled] if scale is not None and current.scaled is not None else []
    if scale is not None:
        await _patch(kube, *scale, dry_run=True)
    if not dry_run:
        for obj in changed:
            await kube.apply(object_path(obj, namespace), obj)
        if scale is not None:
            await _patch(kube, *scale)
        for obj in gone:
            precondition = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": precondition,
                    "propagationPolicy": "Background"}  # fmt: skip
            try:
                await kube.request("DELETE", object_path(obj, namespace), body)
            except NotFoundError:
                continue
    configured = [describe(o) for o in [*changed, *scaled]]
    return Updated(configured, [describe(o) for o in gone], dry_run)


async def update_async(
    kube: KubeClient, name: str, namespace: str, change: Change, dry_run: bool = False
) -> Updated:
    """Update the job ``name`` (see the module doc); raises ``NotFoundError`` (no such
    job), ``ValidationError`` (from ``change``: nothing is written) or, after
    :data:`ATTEMPTS` conflicts, ``ConflictError``."""
    last: ConflictError | None = None
    for _ in range(ATTEMPTS):
        try:
            return await _attempt(kube, name, namespace, change, dry_run)
        except ConflictError as exc:
            last = exc
    raise ConflictError(
        f"the serving job {name} kept changing while it was updated ({ATTEMPTS} tries, "
        f"last: {last}); run the update again"
    )


def update(
    name: str,
    namespace: str,
    change: Change,
    kubeconfig: str | None = None,
    context: str | None = None,
    dry_run: bool = False,
) -> Updated:
    """``serve update kserve --backend kubernetes`` (``dry_run``: the API server's dry run)."""

    async def updated(kube: KubeClient) -> Updated:
        return await update_async(kube, name, namespace, change, dry_run)

    return run(updated, kubeconfig, context)


__all__ = ["ATTEMPTS", "Updated", "read_rendered", "update", "update_async"]
