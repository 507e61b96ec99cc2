"""Apply rendered objects to a cluster: their REST paths, server-side apply, CRD install."""

from __future__ import annotations

import asyncio
import time

from tierserve.errors import ExternalError
from tierserve.runtime.kube.client import KubeClient, Obj
from tierserve.runtime.kube.crd import TIERSERVE_GROUP, resource_policy_crd

_PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Service": "services",
    "Pod": "pods",
    "Node": "nodes",
    "Deployment": "deployments",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "CustomResourceDefinition": "customresourcedefinitions",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "InferenceService": "inferenceservices",
    "ResourcePolicy": "resourcepolicies",
    "NetworkPolicy": "networkpolicies",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Secret": "secrets",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
}
_CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "APIService",
}


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    """``/api/v1/namespaces/ns/pods`` or ``/apis/apps/v1/namespaces/ns/deployments``."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    where = "" if kind in _CLUSTER_SCOPED or namespace is None else f"/namespaces/{namespace}"
    plural = _PLURALS.get(kind, kind.lower() + "s")
    return f"{base}{where}/{plural}"


def object_path(obj: Obj, namespace: str = "default") -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace") or namespace
    return f"{collection_path(obj['apiVersion'], obj['kind'], ns)}/{meta['name']}"


def describe(obj: Obj) -> str:
    """kubectl's ``kind.group/name``, e.g. ``deployment.apps/deepseek-predictor``."""
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    kind = obj["kind"].lower()
    return (
        f"{kind}.{group}/{obj['metadata']['name']}"
        if group
        else f"{kind}/{obj['metadata']['name']}"
    )


async def apply_all(
    kube: KubeClient, objects: list[Obj], dry_run: bool = False, manager: str = "tierserve"
) -> list[Obj]:
    """Server-side apply each object in order; returns what the API server answered."""
    out = []
    for obj in objects:
        out.append(await kube.apply(object_path(obj, kube.config.namespace), obj, manager, dry_run))
    return out


async def wait_established(kube: KubeClient, name: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        crd = await kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = crd.get("status", {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise ExternalError(f"CRD {name} not established after {timeout_s:g} s")
        await asyncio.sleep(0.1)


async def install_crd(kube: KubeClient, group: str = TIERSERVE_GROUP, dry_run: bool = False) -> Obj:
    """Apply the ResourcePolicy CRD for ``group`` and wait until it is served."""
    crd = resource_policy_crd(group)
    (applied,) = await apply_all(kube, [crd], dry_run)
    if not dry_run:
        await wait_established(kube, crd["metadata"]["name"])
    return applied


__all__ = ["apply_all", "collection_path", "describe", "install_crd", "object_path"]
